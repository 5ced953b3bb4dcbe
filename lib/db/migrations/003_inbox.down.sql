-- sequelize-pgpubsub library migration 3, undone: the inbox goes, with what it recorded.

DROP TABLE {{schema}}.inbox;
