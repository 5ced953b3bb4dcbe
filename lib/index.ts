/**
 * sequelize-pgpubsub: the public surface. Anything not exported here is internal.
 *
 * @example
 * import { Sequelize } from 'sequelize';
 * import pgpubsub from 'sequelize-pgpubsub';
 * const sequelize = new Sequelize(process.env.DATABASE_URL!).use(pgpubsub);
 */
import { pgpubsub } from './plugin';

export { install, pgpubsub, type SequelizePlugin } from './plugin';
export type { TriggerRisk } from './triggers/risks';
export { Admin, type BlockedKey, type ChannelStatus, type FailedNotification, type FailedNotificationDetail, type FailedSelection, type ListenerStatus, type Status } from './ops/admin';
export { PgPubSub, type InstallResult, type PgPubSubOptions } from './pubsub';
export { TriggerManager } from './triggers/manager';
export {
  channel,
  CustomChannel,
  CHANNEL_EVENTS,
  DEFAULT_RETRY,
  type AnyChannel,
  type ChannelEvent,
  type ChannelOp,
  type CustomChannelOptions,
  type ModelChannel,
  type ModelChannelOptions,
  type ModelPubSubOptions,
  type RetryPolicy,
} from './channels/channel';
export type { NotificationContext, QueryableConnection, SetContextOptions } from './channels/context';
export type { NotifyOptions } from './channels/notify';
export { Listener } from './listener/listener';
export type { DrainEnd, Failure, ListenConnectionConfig, ListenerEvents, ListenOptions, ListenerStats, MessageDone, MessageStart, RunningAlone } from './listener/types';
export type { BatchContext, CallbackContext, CustomBatchCallback, CustomCallback, CustomMessage, ModelBatchCallback, ModelCallback, ModelMessage, ModelMessageFields, ModelMessageRows, QueryResult, RawQuery } from './channels/message';
export type { ChannelName, ModelChannelName, ModelChannelOp, Register } from './channels/names';
export { consoleLogger, type Logger, type LogLevel } from './ops/logger';
export { runCluster, type ClusterOptions } from './process/cluster';
export type { DashboardHandler, DashboardOptions } from './ops/dashboard';
export type { DatabaseMetrics, ListenerMetrics, MetricsOptions, PubSubMetrics, Readiness } from './ops/metrics';
export { supervise, SupervisorState, type SuperviseOptions } from './process/supervisor';
export { runWorker, type RunWorkerOptions } from './process/worker';
export { Relay, startRelay, type RelayOptions, type RelayStats } from './relay/relay';
export { Inbox } from './relay/inbox';
export { startInbox, type InboxOptions } from './relay/start-inbox';
export type { RawMessage } from './listener/types';
export {
  AdminUsageError,
  AppLoadError,
  CallbackTimeoutError,
  ChannelDefinitionError,
  ChannelUsageError,
  ContextError,
  ListenOptionsError,
  MalformedPayloadError,
  LibraryVersionError,
  MissingTableError,
  NonRetryableError,
  NotifyPayloadError,
  PgPubSubError,
  RelayError,
  SetupError,
  TriggerMigrationError,
  type PgPubSubErrorCode,
} from './errors';
export { libraryMigrations, migrations, type LibraryMigration, type LibraryMigrationModule, type LibraryMigrationOptions } from './db/migrations/index';
export type { TriggerState, TriggerStatus, SyncResult } from './triggers/reconcile';
export type { TriggerSpec } from './triggers/render';
export { generateTriggerMigration, type GenerateResult } from './triggers/generate';

export default pgpubsub;
