/** The library's own tables and functions (from its migration), as opposed to channel triggers. */
export const LIBRARY_TABLES = ['pgpubsub_inflight', 'pgpubsub_notification'];
export const LIBRARY_FUNCTIONS = ['pgpubsub_claim', 'pgpubsub_context', 'pgpubsub_db_version', 'pgpubsub_db_version_changed', 'pgpubsub_parse_context', 'pgpubsub_refresh_db_version', 'pgpubsub_wake'];
/** SQL list for `NOT IN (…)`: the library's functions, which its trigger shares a name with. */
export const LIBRARY_NAMES_SQL = LIBRARY_FUNCTIONS.map((name) => `'${name}'`).join(', ');
