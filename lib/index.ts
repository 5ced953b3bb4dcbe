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
export { Admin, type ChannelStatus, type FailedNotification, type FailedNotificationDetail, type FailedSelection, type ListenerStatus, type Status } from './admin';
export { PgPubSub, TriggerManager, type InstallResult, type PgPubSubOptions } from './pubsub';
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
} from './channel';
export type { NotificationContext, QueryableConnection, SetContextOptions } from './context';
export type { NotifyOptions } from './notify';
export { Listener, type DrainEnd, type Failure, type ListenConnectionConfig, type ListenerEvents, type ListenOptions, type ListenerStats, type MessageDone, type MessageStart, type RunningAlone } from './listener';
export type { BatchContext, CallbackContext, CustomBatchCallback, CustomCallback, CustomMessage, ModelBatchCallback, ModelCallback, ModelMessage, ModelMessageFields, ModelMessageRows } from './message';
export type { ChannelName, ModelChannelName, ModelChannelOp, Register } from './channel-names';
export { consoleLogger, type Logger, type LogLevel } from './logger';
export { runCluster, type ClusterOptions } from './cluster';
export type { DashboardHandler, DashboardOptions } from './dashboard';
export type { DatabaseMetrics, ListenerMetrics, MetricsOptions, PubSubMetrics, Readiness } from './metrics';
export { supervise, SupervisorState, type SuperviseOptions } from './supervisor';
export { runWorker, type RunWorkerOptions } from './worker';
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
  SetupError,
  TriggerMigrationError,
  type PgPubSubErrorCode,
} from './errors';
export { libraryMigrations, migrations, type LibraryMigration, type LibraryMigrationModule, type LibraryMigrationOptions } from './migrations';
export type { TriggerState, TriggerStatus, SyncResult } from './trigger-reconcile';
export type { TriggerSpec } from './trigger-render';
export { generateTriggerMigration, type GenerateResult } from './migration-generate';

export default pgpubsub;
