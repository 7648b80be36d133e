-- The SQLite schema flashback-contract 0.1.0 created on first use (metadata.create_all),
-- dumped from sqlite_master: migrations must recognise and upgrade exactly this.
CREATE TABLE mock_settings (
	name VARCHAR(128) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE node_keys (
	key_id VARCHAR(128) NOT NULL, 
	node_id VARCHAR(128) NOT NULL, 
	PRIMARY KEY (key_id, node_id), 
	FOREIGN KEY(key_id) REFERENCES organization_keys (id) ON DELETE CASCADE
);

CREATE TABLE node_signatures (
	digest VARCHAR(64) NOT NULL, 
	accepted_at VARCHAR(40) NOT NULL, 
	PRIMARY KEY (digest)
);

CREATE TABLE nodes (
	ip VARCHAR(64) NOT NULL, 
	org_id VARCHAR(128) NOT NULL, 
	key_id VARCHAR(128) NOT NULL, 
	provider VARCHAR(16) NOT NULL, 
	region VARCHAR(128) NOT NULL, 
	version VARCHAR(128) NOT NULL, 
	status VARCHAR(128) NOT NULL, 
	services BIGINT, 
	updated_at VARCHAR(40) NOT NULL, 
	PRIMARY KEY (ip)
);

CREATE TABLE organization_keys (
	seq INTEGER NOT NULL, 
	id VARCHAR(128) NOT NULL, 
	org_id VARCHAR(128) NOT NULL, 
	public_key TEXT NOT NULL, 
	created_at VARCHAR(40) NOT NULL, 
	PRIMARY KEY (seq), 
	UNIQUE (id), 
	FOREIGN KEY(org_id) REFERENCES organizations (id)
);

CREATE TABLE organizations (
	id VARCHAR(128) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE repo_ai_api_keys (
	seq INTEGER NOT NULL, 
	id VARCHAR(128) NOT NULL, 
	repo_id VARCHAR(128) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	"key" VARCHAR(255), 
	ai_type VARCHAR(16) NOT NULL, 
	secret_encrypted BLOB NOT NULL, 
	created_at VARCHAR(40) NOT NULL, 
	deleted_at VARCHAR(40), 
	PRIMARY KEY (seq), 
	UNIQUE (id), 
	FOREIGN KEY(repo_id) REFERENCES repositories (id)
);

CREATE TABLE repositories (
	id VARCHAR(128) NOT NULL, 
	org_id VARCHAR(128) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(org_id) REFERENCES organizations (id)
);

CREATE TABLE system_events (
	id INTEGER NOT NULL, 
	timestamp VARCHAR(40) NOT NULL, 
	context INTEGER NOT NULL, 
	event INTEGER NOT NULL, 
	org_id VARCHAR(128) NOT NULL, 
	user_id VARCHAR(128), 
	context_id VARCHAR(128) NOT NULL, 
	json_data TEXT, 
	workspace_id VARCHAR(128), 
	show_unread BOOLEAN NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE users (
	id VARCHAR(128) NOT NULL, 
	org_id VARCHAR(128) NOT NULL, 
	role INTEGER NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	email VARCHAR(255) NOT NULL, 
	token VARCHAR(512), 
	PRIMARY KEY (id), 
	FOREIGN KEY(org_id) REFERENCES organizations (id), 
	UNIQUE (token)
);

CREATE INDEX ix_organization_keys_org_id ON organization_keys (org_id);

CREATE INDEX ix_repo_ai_api_keys_repo_id ON repo_ai_api_keys (repo_id);

CREATE INDEX ix_system_events_org_id ON system_events (org_id);
