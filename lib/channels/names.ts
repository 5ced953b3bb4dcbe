/**
 * What the compiler knows of channels. A model class that declares its channels in a static
 * `pgpubsub` (and passes it to `init`) makes its channel names and their events known: `on()` and
 * `onBatch()` take only those names, and a callback's `op` is only what the channel's events send,
 * with `old`/`new` narrowed by it (on `'INSERT'`, `new` is the instance, `old` null). `Register`
 * lists an app's models and custom channel names, so that `listen({ channels })` takes only them.
 * A model without the static, and an app without `Register`, get plain strings, as before.
 *
 * @example
 * class Author extends Model<InferAttributes<Author>, InferCreationAttributes<Author>> {
 *   static readonly pgpubsub = { channels: { author_created: { events: ['insert'] } } } satisfies ModelPubSubOptions;
 * }
 * Author.init(attributes, { sequelize, pgpubsub: Author.pgpubsub });
 */
import type { ChannelEvent, ChannelOp } from './channel';

/**
 * An app's channels, for the compiler: add them by declaration merging.
 *
 * @example
 * declare module 'sequelize-pgpubsub' {
 *   interface Register {
 *     models: typeof Author | typeof Post;
 *     customChannels: 'post_reads';
 *   }
 * }
 */
export interface Register {}

/** The channels a model class declares in its static `pgpubsub`, or never. */
type DeclaredChannels<S> = S extends { readonly pgpubsub: { readonly channels: infer C } } ? C : never;

/** The channel names of model class `S`: those of its static `pgpubsub`, or any string. */
export type ModelChannelName<S> = [DeclaredChannels<S>] extends [never] ? string : Extract<keyof DeclaredChannels<S>, string>;

/** What a channel's `events` option holds, as a union of events. */
type EventsOf<E> = E extends readonly (infer One)[] ? One : E;

/** The ops that channel `N` of model class `S` sends: its events upper-cased, or every op. */
export type ModelChannelOp<S, N> = [DeclaredChannels<S>] extends [never]
  ? ChannelOp
  : N extends keyof DeclaredChannels<S>
    ? DeclaredChannels<S>[N] extends { readonly events: infer E }
      ? Extract<ChannelOp, Uppercase<Extract<EventsOf<E>, ChannelEvent>>> extends infer Op
        ? [Op] extends [never] ? ChannelOp : Op
        : ChannelOp
      : ChannelOp
    : ChannelOp;

type RegisteredModels = Register extends { models: infer S } ? S : never;
type RegisteredCustom = Register extends { customChannels: infer N extends string } ? N : never;

/** A channel name `listen({ channels })` takes: one of `Register`'s, or any string without it. */
export type ChannelName = [RegisteredModels | RegisteredCustom] extends [never]
  ? string
  : (RegisteredModels extends infer S ? (S extends unknown ? ModelChannelName<S> : never) : never) | RegisteredCustom;
