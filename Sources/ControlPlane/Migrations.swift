public import ServiceContract
public import Database

/// The host's own schema (identity, tenants, RBAC, quotas, tasks, idempotency), as numbered
/// migrations of the `core` service, applied in order and recorded in `schema_migrations`.
///
/// The rows of the built-in roles (migration 1) stay as the targets of bindings; what those roles
/// grant is computed from the services' declarations (``ServiceCatalog``), not read from them.
///
/// The SQL is the subset SQLite and PostgreSQL both accept: `TEXT`, `BIGINT` and `INTEGER`
/// columns, times as unix seconds in `BIGINT`, ids as `TEXT`, booleans as `INTEGER` 0/1, no
/// autoincrement, no vendor functions. Queries use `$1…$n` placeholders for the same reason.
/// Append new migrations; never edit one that shipped.
public enum Migrations {
    /// The PostgreSQL advisory lock the migration runner takes (an arbitrary constant: "cloudctl").
    public static let lockKey: Int64 = 0x636c_6f75_6463_746c

    public static let all: [Migration] = [
        Migration(version: 1, name: "identity, tenants and RBAC", sql: """
            CREATE TABLE users (
                id TEXT PRIMARY KEY,
                email TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                created_at BIGINT NOT NULL
            );
            CREATE TABLE tenants (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                personal_user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
                created_at BIGINT NOT NULL
            );
            CREATE TABLE memberships (
                tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
                user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, user_id)
            );
            CREATE INDEX memberships_user ON memberships (user_id);
            CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                key_hash TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT,
                revoked_at BIGINT,
                replaced_by TEXT
            );
            CREATE INDEX api_keys_user ON api_keys (user_id);
            CREATE TABLE roles (
                id TEXT PRIMARY KEY,
                tenant_id TEXT REFERENCES tenants(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                description TEXT NOT NULL,
                permissions TEXT NOT NULL,
                created_at BIGINT NOT NULL
            );
            CREATE UNIQUE INDEX roles_tenant_name ON roles (tenant_id, name);
            CREATE TABLE role_bindings (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
                user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                role_id TEXT NOT NULL REFERENCES roles(id),
                created_at BIGINT NOT NULL,
                UNIQUE (tenant_id, user_id, role_id)
            );
            CREATE INDEX role_bindings_user ON role_bindings (user_id, tenant_id);
            CREATE TABLE password_reset_tokens (
                token_hash TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                used_at BIGINT
            );
            CREATE INDEX password_reset_tokens_user ON password_reset_tokens (user_id);
            CREATE TABLE login_attempts (
                email TEXT NOT NULL,
                client_address TEXT NOT NULL,
                succeeded INTEGER NOT NULL,
                attempted_at BIGINT NOT NULL
            );
            CREATE INDEX login_attempts_email ON login_attempts (email, attempted_at);
            INSERT INTO roles (id, tenant_id, name, description, permissions, created_at) VALUES
                ('builtin-admin', NULL, 'admin', 'Everything in the tenant, including roles and bindings.', '*:*', 0),
                ('builtin-developer', NULL, 'developer', 'Reads everything; creates, changes and deletes service resources (storage so far).', '*:read,bucket:*,object:*,storage-key:*', 0),
                ('builtin-viewer', NULL, 'viewer', 'Reads everything, changes nothing.', '*:read', 0);
            """),
        Migration(version: 2, name: "tenant quotas and rate limits", sql: """
            CREATE TABLE tenant_quotas (
                tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
                resource TEXT NOT NULL,
                max_value BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, resource)
            );
            CREATE TABLE rate_limit_events (
                scope TEXT NOT NULL,
                subject TEXT NOT NULL,
                occurred_at BIGINT NOT NULL
            );
            CREATE INDEX rate_limit_events_subject ON rate_limit_events (scope, subject, occurred_at);
            CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
            """),
        // The durable task queue (TaskQueue.swift). Times are unix *milliseconds* here. tenant_id is
        // 'system' for the platform's own tasks, so it has no foreign key; NULL idempotency keys never
        // collide. `fence` is raised by every claim (the lease's fencing token).
        Migration(version: 3, name: "task queue", sql: """
            CREATE TABLE tasks (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                payload TEXT NOT NULL,
                idempotency_key TEXT,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                max_attempts INTEGER NOT NULL,
                run_at BIGINT NOT NULL,
                fence BIGINT NOT NULL,
                lease_owner TEXT,
                lease_expires_at BIGINT,
                result TEXT,
                last_error TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                started_at BIGINT,
                finished_at BIGINT
            );
            CREATE UNIQUE INDEX tasks_idempotency ON tasks (tenant_id, kind, idempotency_key);
            CREATE INDEX tasks_due ON tasks (state, run_at);
            CREATE INDEX tasks_tenant ON tasks (tenant_id, created_at);
            """),
        // Idempotency-Key on creates (Idempotency.swift): one row per (tenant, user, key); `state` is
        // 'running' while the first request runs and 'done' once its answer is stored. Times in ms.
        Migration(version: 4, name: "idempotency keys", sql: """
            CREATE TABLE idempotency_keys (
                tenant_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                idempotency_key TEXT NOT NULL,
                request_hash TEXT NOT NULL,
                state TEXT NOT NULL,
                status INTEGER,
                headers TEXT,
                body TEXT,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, user_id, idempotency_key)
            );
            CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
            """),
    ]

    /// Permissions as stored in `roles.permissions`: comma-separated.
    static func encode(_ permissions: [Permission]) -> String { permissions.map(\.description).joined(separator: ",") }

    static func decode(_ text: String) -> [Permission] {
        text.split(separator: ",").compactMap { Permission(String($0)) }
    }
}
