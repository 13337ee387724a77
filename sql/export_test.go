package sql

// Migrations is the embedded migration files, for the tests in package
// sql_test (which cannot be in package sql: internal/pgtest imports it).
var Migrations = migrations
