-- sequelize-pgpubsub library migration 4, undone: the claim planned at each call again.

ALTER FUNCTION {{schema}}.claim(text[], jsonb, integer, integer, integer, bigint[], bigint[]) RESET plan_cache_mode;
