// The migrated template every test database is cloned from (see ./app.ts).
export { prepareTemplate } from './app';
