//! The command line: every subcommand, flag and help text.
//!
//! Parsing only; what each command does is in `commands/`.

mod agent;
mod proxy;

pub use agent::{AgentCommand, AgentEnrollArgs, AgentInstallArgs, AgentRunArgs, AgentStateArgs};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use idmint_client::TokenType;
pub use proxy::{ProxyArgs, ProxyCommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the CLI talks to unless told otherwise: the dev server's address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8710";

const MAIN_AFTER_HELP: &str = "\
Quick start (a dev server with a demo IdP and sample policy, in one command):
  idmint demo

By hand:
  idmint server --dev &                      # dev server on 127.0.0.1:8710
  idmint dev token | idmint login --token -  # log in with a demo CI token
  idmint creds demo-api                      # get a short-lived API token
  idmint exec db/orders-readonly -- psql     # run a command with a database user

In CI, `idmint login` finds the job's OIDC token by itself (GitHub Actions,
GitLab CI, Kubernetes).

Environment:
  IDMINT_ADDR          server URL (like --server)
  IDMINT_CACERT        extra CA certificate file (like --ca-cert)
  IDMINT_TOKEN         session token to use instead of the cached login
  IDMINT_TOKEN_FILE    where `idmint login` caches sessions
                       (default $XDG_CACHE_HOME/idmint/session.json or
                       ~/.cache/idmint/session.json)
  IDMINT_LOG           log filter, e.g. debug or idmint_server=trace

Exit codes: 0 success, 1 error, 2 denied by policy; once `idmint exec` has
started its command, the command's exit code.";

/// idmint: short-lived credentials for verified identities.
///
/// A caller proves who it is (a CI job's OIDC token, a workload's service
/// account token), a Cedar policy decides what it may get, and idmint mints
/// a short-lived, narrowly scoped credential. Every step is audited.
#[derive(Debug, Parser)]
#[command(name = "idmint", version, after_help = MAIN_AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// URL of the idmint server.
    #[arg(long, global = true, env = "IDMINT_ADDR", default_value = DEFAULT_SERVER, value_name = "URL")]
    pub server: String,

    /// Extra CA certificate(s) (PEM) to trust for the server's TLS certificate.
    #[arg(long, global = true, env = "IDMINT_CACERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Output format. `json` is stable for scripts; `env` prints
    /// `export NAME='value'` lines (creds and token-exchange only); `uri`
    /// prints only the connection URI (creds of database roles only).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text and tables.
    Text,
    /// JSON on stdout.
    Json,
    /// Shell `export` lines, for `eval "$(idmint creds ROLE -o env)"`
    /// (also accepted as `shell`).
    #[value(alias = "shell")]
    Env,
    /// Only the connection URI of a database credential, for
    /// `psql "$(idmint creds db/orders -o uri)"`.
    Uri,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the idmint server.
    #[command(after_help = SERVER_AFTER_HELP)]
    Server(ServerArgs),

    /// Log in with an OIDC token and cache the session.
    #[command(after_help = LOGIN_AFTER_HELP)]
    Login(LoginArgs),

    /// Revoke the session on the server and forget it locally.
    Logout,

    /// Show the identity behind the current session.
    Whoami,

    /// AppRole administration: create secret ids (admin).
    #[command(subcommand)]
    Approle(ApproleCommand),

    /// Get a short-lived credential for a role.
    #[command(after_help = CREDS_AFTER_HELP)]
    Creds(CredsArgs),

    /// Run a command with a fresh credential in its environment only.
    #[command(after_help = EXEC_AFTER_HELP)]
    Exec(ExecArgs),

    /// Exchange an OIDC token for an idmint token (RFC 8693), without a session.
    #[command(after_help = TOKEN_EXCHANGE_AFTER_HELP)]
    TokenExchange(TokenExchangeArgs),

    /// List, renew and revoke leases (the credentials idmint has issued).
    #[command(subcommand)]
    Leases(LeasesCommand),

    /// Manage the database and message-queue targets idmint issues users on (admin).
    #[command(subcommand)]
    Target(TargetCommand),

    /// Static secrets sealed in idmint for `idmint proxy` to inject (admin).
    #[command(subcommand)]
    Secret(SecretCommand),

    /// Check and search the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),

    /// Store administration: schema migrations, copying into PostgreSQL.
    #[command(subcommand)]
    Store(StoreCommand),

    /// Policy: test offline, drafts, approvals, history, rollback.
    #[command(subcommand)]
    Policy(PolicyCommand),

    /// Issuances an anomaly rule held for a second admin: list, approve.
    #[command(subcommand, after_help = APPROVALS_AFTER_HELP)]
    Approvals(ApprovalsCommand),

    /// Development helpers (need `idmint server --dev`).
    #[command(subcommand)]
    Dev(DevCommand),

    /// Show whether the server is live and ready.
    Status,

    /// SSH with a one-time certificate and a just-in-time account on the host.
    #[command(after_help = crate::ssh_args::SSH_AFTER_HELP)]
    Ssh(crate::ssh_args::SshArgs),

    /// Walk through the whole flow against a temporary dev server.
    #[command(after_help = DEMO_AFTER_HELP)]
    Demo(DemoArgs),

    /// AWS helpers: `credential_process` for the AWS CLI, SDKs and
    /// Terraform, and writing the profile that uses it.
    #[command(subcommand)]
    Aws(AwsCommand),

    /// The host agent for SSH access: just-in-time accounts (run as root
    /// on each SSH host).
    #[command(subcommand, after_help = agent::AGENT_AFTER_HELP)]
    Agent(AgentCommand),

    /// The egress proxy: identifies local processes, allows only their
    /// configured destinations and injects credentials they never see.
    #[command(after_help = proxy::PROXY_AFTER_HELP)]
    Proxy(ProxyArgs),
}

const SERVER_AFTER_HELP: &str = "\
Examples:
  idmint server --dev                          # everything generated, 127.0.0.1:8710
  idmint server --dev --data-dir ./dev-data    # keep dev state across restarts
  idmint server --config /etc/idmint/idmint.toml
  idmint server --config idmint.toml --check-config

Logs go to stderr; set IDMINT_LOG (e.g. debug) to change the level.";

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Development mode: SQLite, generated keys, the demo IdP and a sample
    /// policy, plain HTTP on loopback.
    #[arg(long)]
    pub dev: bool,

    /// Configuration file (idmint.toml); required unless --dev.
    #[arg(long, value_name = "FILE", required_unless_present = "dev")]
    pub config: Option<PathBuf>,

    /// Where dev mode keeps its database, keys and audit log (default: a new
    /// temporary directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address to listen on, overriding the config (e.g. 127.0.0.1:8710).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Validate the configuration, policy and key files, then exit.
    #[arg(long)]
    pub check_config: bool,

    /// Store to use instead of `[storage]` in the config:
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` or `sqlite:///PATH`.
    #[arg(long, value_name = "URL", env = "IDMINT_STORE", hide_env_values = true)]
    pub store: Option<String>,
}

const STORE_MIGRATE_AFTER_HELP: &str = "\
Without --from/--to, brings the schema of one store (--store URL, or
[storage] of --config) to this idmint's version; servers also do this at
start, so this is for upgrading ahead of a rolling restart.

With --from/--to, copies a whole deployment (sealed keys, policy history,
leases, token denylist) into an empty store and verifies the copy (counts
and a checksum over every lease). Stop the source server first. Both
stores must be sealed with the same root key: keys are copied sealed.

Examples:
  idmint store migrate --store postgres://idmint:PW@db:5432/idmint
  idmint store migrate --config /etc/idmint/idmint.toml
  idmint store migrate --from sqlite:///var/lib/idmint/idmint.db \\
                       --to postgres://idmint:PW@db:5432/idmint";

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Apply schema migrations, or copy a deployment into another store.
    #[command(after_help = STORE_MIGRATE_AFTER_HELP)]
    Migrate(StoreMigrateArgs),
}

#[derive(Debug, Args)]
pub struct StoreMigrateArgs {
    /// The store to migrate: `postgres://…` or `sqlite:///PATH`.
    #[arg(long, value_name = "URL", env = "IDMINT_STORE", hide_env_values = true,
          conflicts_with_all = ["config", "from", "to"])]
    pub store: Option<String>,

    /// Migrate the store configured in `[storage]` of this idmint.toml.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from", "to"])]
    pub config: Option<PathBuf>,

    /// Copy from this store (e.g. `sqlite:///var/lib/idmint/idmint.db`).
    #[arg(long, value_name = "URL", requires = "to")]
    pub from: Option<String>,

    /// Copy into this store (e.g. `postgres://idmint:PW@db:5432/idmint`).
    #[arg(long, value_name = "URL", requires = "from")]
    pub to: Option<String>,

    /// Copy even if the target is not empty (what is there must match).
    #[arg(long, requires = "to")]
    pub force: bool,
}

const LOGIN_AFTER_HELP: &str = "\
Without --token/--token-file, the token is found automatically:
  GitHub Actions  ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN (needs `permissions: id-token: write`),
                  requested with --audience
  GitLab CI       $IDMINT_ID_TOKEN (job `id_tokens:`), else $CI_JOB_JWT_V2
  Kubernetes      $IDMINT_K8S_TOKEN_PATH or /var/run/secrets/tokens/idmint,
                  then the pod's service account token
Outside CI, a person signs in through the server's SSO method (--sso):
the browser flow (authorization code + PKCE, loopback redirect), or the
device flow with --device. See docs/sso.md.

The session is cached per server in $IDMINT_TOKEN_FILE (default
~/.cache/idmint/session.json, mode 0600). `--output json` prints the
session token itself, for scripts: treat that output as a secret.

Examples:
  idmint login                                   # in CI
  idmint dev token | idmint login --token -      # against a dev server
  idmint login --token-file /run/secrets/oidc-token --auth github
  idmint login --sso                             # a person, in the browser
  idmint login --sso corp --device               # a person, on a headless shell
  idmint login --approle billing --role-id ID --secret-id-file FILE   # a legacy app (docs/approle.md)
  idmint login --unix --socket /run/idmint/idmint.sock   # a local process (docs/auth-methods.md)";

#[derive(Debug, Subcommand)]
pub enum ApproleCommand {
    /// Create a secret id for AppRole NAME (admin); printed once, stored
    /// only as a keyed hash. Single-use unless the AppRole says otherwise.
    #[command(
        after_help = "Examples:\n  idmint approle secret-id billing > secret-id   # then: idmint login --approle billing --role-id … --secret-id-file secret-id\n  idmint approle secret-id billing -o json"
    )]
    SecretId {
        /// `[[auth.approle]] name`.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Authentication method.
    #[arg(long, default_value = "oidc", value_parser = ["oidc"])]
    pub method: String,

    /// Read the OIDC token from this file (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// `-`: read the OIDC token from stdin. The token itself is never taken
    /// as an argument: it would leak into shell history and `ps`.
    #[arg(long, value_name = "-", value_parser = ["-"])]
    pub token: Option<String>,

    /// Name of the server's auth config to use (default: chosen by the
    /// token's issuer).
    #[arg(long, value_name = "NAME")]
    pub auth: Option<String>,

    /// Audience to request from GitHub Actions during auto-detection.
    #[arg(long, default_value = "idmint", value_name = "AUD")]
    pub audience: String,

    /// Sign in as a person through the company IdP (the server's
    /// `[[auth.oidc]]` with preset "human"; NAME when it has several).
    /// Without a token and outside CI this is what `idmint login` does.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["token_file", "token"])]
    pub sso: Option<String>,

    /// SSO with the device code flow: for shells without a browser.
    #[arg(long, conflicts_with_all = ["token_file", "token"])]
    pub device: bool,

    /// SSO: print the sign-in URL instead of opening a browser.
    #[arg(long)]
    pub no_browser: bool,

    /// SSO: user name or e-mail to pre-fill at the IdP (`login_hint`).
    #[arg(long, value_name = "USER")]
    pub login_hint: Option<String>,

    /// Log in with an AppRole (`[[auth.approle]] name`) instead of OIDC:
    /// needs --role-id and --secret-id-file.
    #[arg(long, value_name = "NAME", requires_all = ["role_id", "secret_id_file"], conflicts_with_all = ["token_file", "token", "sso", "device"])]
    pub approle: Option<String>,

    /// Log in as the AWS principal of the standard credential chain
    /// (`[[auth.aws_iam]] name`): signs an `sts:GetCallerIdentity` request
    /// that idmint forwards to STS. Nothing secret is sent.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["token_file", "token", "sso", "device", "approle"])]
    pub aws_iam: Option<String>,

    /// AWS IAM: the region to sign for (default $AWS_REGION,
    /// $AWS_DEFAULT_REGION, else us-east-1); must match the server's.
    #[arg(long, value_name = "REGION", requires = "aws_iam")]
    pub aws_region: Option<String>,

    /// AWS IAM: the STS endpoint to sign for (default
    /// $AWS_ENDPOINT_URL_STS, else https://sts.REGION.amazonaws.com).
    #[arg(long, value_name = "URL", requires = "aws_iam")]
    pub sts_endpoint: Option<String>,

    /// AWS IAM: the X-Idmint-Server-Id value (`[[auth.aws_iam]] server_id`);
    /// default the server URL (--addr).
    #[arg(long, value_name = "ID", requires = "aws_iam")]
    pub server_id: Option<String>,

    /// AWS IAM: the AWS profile to take credentials from (default
    /// $AWS_PROFILE, else the environment keys, web identity, `default`).
    #[arg(long, value_name = "PROFILE", requires = "aws_iam")]
    pub aws_profile: Option<String>,

    /// Log in as this process over the server's Unix socket
    /// (`[[auth.unix]]`): the server reads who is calling from the kernel
    /// (uid, executable, cgroup); nothing secret is sent. `--auth NAME`
    /// picks the `[[auth.unix]]` when the server has several.
    #[arg(long, conflicts_with_all = ["token_file", "token", "sso", "device", "approle", "aws_iam"])]
    pub unix: bool,

    /// `--unix`: the server's socket (`[server] unix_socket`).
    #[arg(
        long,
        value_name = "PATH",
        env = "IDMINT_SOCKET",
        default_value = "/run/idmint/idmint.sock"
    )]
    pub socket: PathBuf,

    /// AppRole: the role id (`[[auth.approle]] role_id`).
    #[arg(long, value_name = "ID", requires = "approle")]
    pub role_id: Option<String>,

    /// AppRole: read the secret id from this file (`-` for stdin). It is
    /// never taken as an argument (shell history, `ps`).
    #[arg(long, value_name = "FILE", requires = "approle")]
    pub secret_id_file: Option<PathBuf>,
}

const CREDS_AFTER_HELP: &str = "\
The credential itself (token, or database password and connection URI) is
printed on stdout in every format: handing it to you is what this command is
for. Keep it out of logs and shared terminals; `idmint exec` puts it in one
command's environment instead, without printing it.

Output formats (-o):
  text  lease, expiry and the credential; for a database user: engine,
        username, host, port, database, password and connection URI
  json  the whole response, for scripts
  env   export lines for eval: IDMINT_LEASE_ID and IDMINT_EXPIRES_AT, plus
        IDMINT_ACCESS_TOKEN, IDMINT_TOKEN_TYPE (tokens) or DATABASE_URL,
        IDMINT_USERNAME, IDMINT_PASSWORD (database users) or AWS_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (AWS keys);
        `-o shell` is the same
  uri   only the connection URI of a database user (an error for tokens)

Examples:
  idmint creds demo-api
  idmint creds demo-api --ttl 2m --scope orders:read
  eval \"$(idmint creds demo-api -o env)\"   # sets IDMINT_ACCESS_TOKEN, IDMINT_LEASE_ID
  idmint creds db/orders-readonly -o json
  eval \"$(idmint creds db/orders-readonly -o env)\"   # sets DATABASE_URL, IDMINT_PASSWORD, ...
  psql \"$(idmint creds db/orders-readonly -o uri)\"

Exits with 2 when policy denies the request.";

#[derive(Debug, Args)]
pub struct CredsArgs {
    /// Role to get a credential for (e.g. demo-api, db/orders).
    pub role: String,

    /// Requested lifetime (e.g. 90s, 5m); capped by the role and policy.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<String>,

    /// Requested scope; repeat for several. Default: the role's scopes.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,

    /// Audience of the credential. Default: the role's first audience.
    /// For AWS `assumed_role` roles this is the role ARN to assume
    /// (`--role-arn`).
    #[arg(long, visible_alias = "role-arn", value_name = "AUD")]
    pub audience: Option<String>,

    /// For x509 roles: a PKCS#10 CSR (PEM) whose public key is certified;
    /// the private key never leaves this machine and none is returned
    /// (e.g. `openssl req -new -key svid.key -subj /O=x -out svid.csr`).
    #[arg(long, value_name = "FILE")]
    pub csr: Option<std::path::PathBuf>,
}

const EXEC_AFTER_HELP: &str = "\
Gets a credential for ROLE (like `idmint creds`), runs CMD with it in CMD's
environment only, and passes CMD's stdin, stdout and stderr through. Nothing
is printed or written to disk; idmint's own messages go to stderr.

Environment of CMD (on top of idmint's own environment):
  every credential   IDMINT_LEASE_ID, IDMINT_EXPIRES_AT (unix seconds)
  token              IDMINT_ACCESS_TOKEN, IDMINT_TOKEN_TYPE
  database user      DATABASE_URL (the connection URI), IDMINT_USERNAME,
                     IDMINT_PASSWORD, and by engine:
    postgres         PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (removed
                     when the role names no database), so plain `psql` works
    mysql, mariadb   MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_PWD; the client takes
                     the user name from `-u \"$IDMINT_USERNAME\"` (USER is left
                     alone: other programs rely on it)
    redis            REDIS_URL (`redis-cli -u \"$REDIS_URL\"`)
    rabbitmq         AMQP_URL
  AWS keys           AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
                     (STS sessions), AWS_REGION, AWS_DEFAULT_REGION; AWS_PROFILE
                     and other variables that would shadow them are removed

The lease is revoked when CMD ends (--revoke-after, the default), so the
credential lives exactly as long as the command; --no-revoke-after leaves it
to expire with its TTL. SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to idmint
are passed on to CMD and idmint waits for CMD to end, so that the lease is
revoked even after Ctrl-C or a closed terminal. (After Ctrl-C in a terminal
CMD may see SIGINT twice: once from the terminal, once from idmint.)

`$VAR` in CMD's arguments is expanded by your shell before idmint runs, so
write `idmint exec ROLE -- sh -c 'psql \"$DATABASE_URL\"'`, not
`idmint exec ROLE -- psql \"$DATABASE_URL\"`.

Exit code: CMD's own, or 128+N when a signal N killed it; 127 when CMD was
not found, 126 when it could not be started. Before CMD starts: 1 on error,
2 when policy denies the credential.

Examples:
  idmint exec db/orders-readonly -- psql -c 'select count(*) from reporting.orders'
  idmint exec db/orders-readonly -- sh -c 'pg_dump \"$DATABASE_URL\" > orders.sql'
  idmint exec db/app-mysql -- sh -c 'mysql -u \"$IDMINT_USERNAME\" app'
  idmint exec cache/sessions -- sh -c 'redis-cli -u \"$REDIS_URL\" ping'
  idmint exec demo-api --scope orders:read -- ./deploy.sh
  idmint exec aws/deploy-prod -- terraform apply
  idmint exec db/migrations --ttl 30m --no-revoke-after -- ./migrate";

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Role to get a credential for (e.g. db/orders-readonly, demo-api).
    pub role: String,

    /// Requested lifetime (e.g. 90s, 5m); capped by the role and policy.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<String>,

    /// Requested scope; repeat for several. Default: the role's scopes.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,

    /// Audience of the credential. Default: the role's first audience.
    /// For AWS `assumed_role` roles this is the role ARN to assume
    /// (`--role-arn`).
    #[arg(long, visible_alias = "role-arn", value_name = "AUD")]
    pub audience: Option<String>,

    /// Revoke the lease when CMD ends (the default).
    #[arg(long, overrides_with = "no_revoke_after")]
    pub revoke_after: bool,

    /// Leave the lease alone when CMD ends: it lasts until its TTL runs out.
    #[arg(long, overrides_with = "revoke_after")]
    pub no_revoke_after: bool,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

impl ExecArgs {
    /// Whether to revoke the lease after the command: yes unless
    /// `--no-revoke-after` came last (the two flags override each other, so
    /// at most one is set).
    pub fn revoke_after(&self) -> bool {
        self.revoke_after || !self.no_revoke_after
    }
}

const TOKEN_EXCHANGE_AFTER_HELP: &str = "\
Examples:
  idmint token-exchange --subject-token-file $TOKEN_FILE --audience https://api.example.test
  idmint dev token | idmint token-exchange --subject-token-file - \\
      --audience https://api.example.test --scope orders:read -o env

Exits with 2 when policy denies the exchange.";

#[derive(Debug, Args)]
pub struct TokenExchangeArgs {
    /// File holding the subject token (your OIDC token); `-` for stdin.
    #[arg(long, value_name = "FILE")]
    pub subject_token_file: PathBuf,

    /// Type of the subject token.
    #[arg(long, default_value = "jwt", value_name = "TYPE", value_parser = parse_token_type)]
    pub subject_token_type: TokenType,

    /// Audience of the token to mint (the downstream API).
    #[arg(long, value_name = "AUD")]
    pub audience: String,

    /// Requested scope; repeat for several.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,

    /// Role to mint for, when the audience does not identify one.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,

    /// RFC 8707 resource indicator.
    #[arg(long, value_name = "URI")]
    pub resource: Option<String>,

    /// File holding an actor token (delegation); `-` for stdin.
    #[arg(long, value_name = "FILE")]
    pub actor_token_file: Option<PathBuf>,

    /// Type of the actor token.
    #[arg(long, default_value = "jwt", value_name = "TYPE", value_parser = parse_token_type, requires = "actor_token_file")]
    pub actor_token_type: TokenType,
}

#[derive(Debug, Subcommand)]
pub enum LeasesCommand {
    /// List leases (yours; --all for everyone's, which needs admin).
    #[command(
        after_help = "Examples:\n  idmint leases list --live\n  idmint leases list --all --role-prefix db/ -o json"
    )]
    List(LeasesListArgs),
    /// Extend a lease (roles that allow renewal; for a database user this
    /// moves its `VALID UNTIL`).
    #[command(after_help = LEASES_RENEW_AFTER_HELP)]
    Renew(LeasesRenewArgs),
    /// Revoke one lease, or (admin) every live lease of matching roles.
    #[command(after_help = LEASES_REVOKE_AFTER_HELP)]
    Revoke(LeasesRevokeArgs),
}

const LEASES_RENEW_AFTER_HELP: &str = "\
The extension counts from now and is capped by the role's max_ttl, counted
from the lease's creation; the server refuses (not_renewable) roles that
cannot be renewed.

Examples:
  idmint leases renew lease_0123abcd
  idmint leases renew \"$IDMINT_LEASE_ID\" --ttl 15m -o json";

#[derive(Debug, Args)]
pub struct LeasesRenewArgs {
    /// Lease id (as printed by `idmint creds`).
    pub id: String,
    /// Requested extension from now (e.g. 15m). Default: the role's default TTL.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<String>,
}

const LEASES_REVOKE_AFTER_HELP: &str = "\
--prefix is for incident response and needs admin: it revokes every live
lease whose role name starts with PREFIX, for every principal. It is a plain
string prefix (db/orders also matches db/orders-admin), so give the full role
name or end it with `/`. On a terminal it shows how many leases match and
asks for confirmation; without a terminal (scripts) it refuses to run unless
--yes is given; answering anything but y/yes revokes nothing and exits with
1. Exits with 1 too when any revocation failed (the server keeps retrying
those).

Examples:
  idmint leases revoke lease_0123abcd
  idmint leases revoke --prefix db/orders-readonly
  idmint leases revoke --prefix db/orders-readonly --yes -o json";

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "prefix"])))]
pub struct LeasesRevokeArgs {
    /// Lease id (as printed by `idmint creds`).
    pub id: Option<String>,
    /// Revoke every live lease whose role name starts with this (admin).
    #[arg(long, value_name = "PREFIX", value_parser = parse_prefix)]
    pub prefix: Option<String>,
    /// Do not ask for confirmation (required with --prefix when stdin is
    /// not a terminal).
    // `conflicts_with` rather than `requires = "prefix"`: clap counts the
    // group `which` (id or prefix) as meeting that requirement.
    #[arg(long, short = 'y', conflicts_with = "id")]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Replace a target's admin password with a new random one only idmint knows.
    #[command(after_help = TARGET_ROTATE_AFTER_HELP)]
    RotateAdmin {
        /// Target name, as in the server's configuration.
        name: String,
    },
}

const TARGET_ROTATE_AFTER_HELP: &str = "\
Needs admin. idmint changes the password of the admin account it uses on the
target, seals the new one and uses it from then on, so after setup no person
knows the admin password. Users issued earlier are not affected.

Examples:
  idmint target rotate-admin orders-pg
  idmint target rotate-admin orders-pg -o json";

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store or replace a static secret (e.g. an upstream API key).
    #[command(after_help = SECRET_PUT_AFTER_HELP)]
    Put(SecretPutArgs),
    /// List stored secrets: name, version, fingerprint; never the values.
    #[command(after_help = SECRET_LIST_AFTER_HELP)]
    List,
    /// Delete a static secret; roles that deliver it fail until it is put again.
    #[command(after_help = SECRET_DELETE_AFTER_HELP)]
    Delete {
        /// Secret name.
        name: String,
    },
}

/// Where `idmint secret put` reads the value: exactly one source, and never
/// a command-line argument (it would land in shell history and `ps`).
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("secret_source")
        .required(true)
        .multiple(false)
        .args(["from_file", "from_env", "stdin"])
))]
pub struct SecretPutArgs {
    /// Secret name: [a-z0-9][a-z0-9._-]{0,62}.
    pub name: String,
    /// Read the value from this file (one trailing newline is removed).
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<std::path::PathBuf>,
    /// Read the value from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub from_env: Option<String>,
    /// Read the value from standard input (one trailing newline is removed).
    #[arg(long)]
    pub stdin: bool,
}

const SECRET_PUT_AFTER_HELP: &str = "\
Needs admin. The value is sealed in idmint's store and never returned by the
API: `static` roles deliver it to `idmint proxy`, which injects it into
upstream requests, so no workload ever sees it (see docs/proxy.md).

There is deliberately no way to give the value as an argument: it would be
saved in your shell history and visible to every user in `ps`. Use a file,
an environment variable or standard input. One trailing newline (as left by
`echo` or an editor) is removed; at most 64 KiB.

Examples:
  idmint secret put openai --from-file ./openai.key
  idmint secret put openai --from-env OPENAI_API_KEY
  pass show openai | idmint secret put openai --stdin";

const SECRET_LIST_AFTER_HELP: &str = "\
Needs admin. The fingerprint is a keyed hash (fp_…) of the value, the same one
the audit log and the leases of `static` roles show; it tells versions apart
without revealing anything.

Examples:
  idmint secret list
  idmint secret list -o json";

const SECRET_DELETE_AFTER_HELP: &str = "\
Needs admin. Credentials already handed to `idmint proxy` are not recalled;
new requests for roles that deliver the secret fail with
static_secret_missing until it is stored again.

Examples:
  idmint secret delete openai";

#[derive(Debug, Args)]
pub struct LeasesListArgs {
    /// Everyone's leases (needs admin).
    #[arg(long)]
    pub all: bool,
    /// Only roles whose name starts with this.
    #[arg(long, value_name = "PREFIX")]
    pub role_prefix: Option<String>,
    /// Only leases that are still live.
    #[arg(long)]
    pub live: bool,
    /// At most this many.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an audit log file: hash chain, sequence, signed checkpoints.
    #[command(after_help = "\
Exits with 1 when any problem is found; each is printed with its line number.

Examples:
  idmint audit verify /var/log/idmint/audit.jsonl --public-key-file audit.pub
  idmint audit verify audit.jsonl -o json")]
    Verify(AuditVerifyArgs),
    /// Show the audit events behind a lease, token, request or fingerprint.
    #[command(after_help = "\
Without --file the server is asked (needs admin); with --file the log is read locally.

Examples:
  idmint audit trace lease_0123abcd
  idmint audit trace 9007199254740993 --file /var/log/idmint/audit.jsonl   (SSH serial)
  idmint audit trace v_ro_alice_x1y2 --file audit.jsonl -o json             (DB user)
  idmint audit trace prx_3f2a… --proxy-audit /var/log/idmint/proxy-audit.jsonl
      (a request seen by `idmint proxy`: its record, then the minted lease's trace)")]
    Trace(AuditTraceArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The audit log (JSON lines).
    pub file: PathBuf,
    /// More audit logs, one per server of a multi-server deployment: each
    /// server keeps its own hash chain, and every chain is checked.
    #[arg(value_name = "MORE_FILES")]
    pub more_files: Vec<PathBuf>,
    /// The server's audit public key (base64url Ed25519). Without it, each
    /// checkpoint is checked against the key it embeds, which shows the log
    /// is intact but not who signed it.
    #[arg(long, value_name = "BASE64URL", conflicts_with = "public_key_file")]
    pub public_key: Option<String>,
    /// File holding the public key (base64url text or 32 raw bytes).
    #[arg(long, value_name = "FILE")]
    pub public_key_file: Option<PathBuf>,
    /// Show progress on stderr even when it is not a terminal (a bar on a
    /// terminal, otherwise one line per 10%). On a terminal it is shown
    /// anyway.
    #[arg(long)]
    pub progress: bool,
}

#[derive(Debug, Args)]
pub struct AuditTraceArgs {
    /// Lease id, token id, request id, credential fingerprint, session token
    /// id, SSH certificate serial, JIT account, AWS access key id or role
    /// session name, or database user name.
    pub reference: String,
    /// Read this audit log file instead of asking the server.
    #[arg(long, value_name = "AUDIT_FILE")]
    pub file: Option<PathBuf>,
    /// The egress proxy's audit file, for a `prx_…` reference (the
    /// `x-idmint-proxy-request-id` a workload got back): the proxy's record
    /// is shown, then the trace of the idmint lease it injected.
    #[arg(long, value_name = "PROXY_AUDIT_FILE")]
    pub proxy_audit: Option<PathBuf>,
}

const APPROVALS_AFTER_HELP: &str = "\
An [[anomaly.rule]] with action = \"require_approval\" refuses an issuance that
raises an anomaly signal (first use of a role, a new network, a burst) with
403 approval_required and opens an approval. An admin other than the
requester approves it; the requester then retries within [anomaly]
approval_ttl and gets the credential once.

Examples:
  idmint approvals list
  idmint approvals approve 3f9a1c2b7d4e5f60";

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Pending and approved (unused) approvals, newest first.
    List,
    /// Approve one (you must not be the requester).
    Approve(ApprovalIdArgs),
}

#[derive(Debug, Args)]
pub struct ApprovalIdArgs {
    /// The approval id from the refusal or `idmint approvals list`.
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Evaluate a request against a policy directory, offline.
    #[command(after_help = POLICY_TEST_AFTER_HELP)]
    Test(PolicyTestArgs),
    /// Propose, review and approve policy changes (two-person rule).
    #[command(subcommand, after_help = POLICY_DRAFT_AFTER_HELP)]
    Draft(PolicyDraftCommand),
    /// Every policy version: author, approvers, comment, time.
    History,
    /// Propose going back to an old version (a draft that needs approval).
    Rollback(PolicyRollbackArgs),
}

const POLICY_DRAFT_AFTER_HELP: &str = "\
A draft becomes the active policy only when enough admins other than its
author approve it ([governance] approvals, more for roles with labels in
approvals_for_labels). Who may draft and approve is policy itself: Cedar
actions Action::\"policy::draft\" and Action::\"policy::approve\" on
Server::\"idmint\".

Examples:
  idmint policy draft create --from ./policy --comment \"tighten deploys\"
  idmint policy draft show 3f9a1c2b7d4e
  idmint policy draft diff 3f9a1c2b7d4e
  idmint policy draft approve 3f9a1c2b7d4e          # as a second admin
  idmint policy draft approve 3f9a1c2b7d4e --break-glass --reason \"INC-42\"";

#[derive(Debug, Subcommand)]
pub enum PolicyDraftCommand {
    /// Upload a policy directory as a draft (validated by the server).
    Create(PolicyDraftCreateArgs),
    /// Drafts, newest first.
    List,
    /// A draft: state, approvals, role changes and impact on real requests.
    Show(PolicyDraftIdArgs),
    /// Unified diff of the draft against the active policy.
    Diff(PolicyDraftIdArgs),
    /// Approve a draft; the last required approval activates it.
    Approve(PolicyDraftApproveArgs),
    /// Reject a pending draft.
    Reject(PolicyDraftRejectArgs),
}

#[derive(Debug, Args)]
pub struct PolicyDraftCreateArgs {
    /// Directory with `*.cedar` files and `roles.toml`.
    #[arg(long = "from", value_name = "DIR")]
    pub from: PathBuf,
    /// Why: shown to approvers and kept in the history.
    #[arg(long, default_value = "")]
    pub comment: String,
}

#[derive(Debug, Args)]
pub struct PolicyDraftIdArgs {
    /// Draft id (from `idmint policy draft list`).
    pub id: String,
}

#[derive(Debug, Args)]
pub struct PolicyDraftApproveArgs {
    /// Draft id.
    pub id: String,
    /// Emergency: activate now on your approval alone, for
    /// [governance] break_glass_ttl; reverts unless a second admin approves.
    #[arg(long, requires = "reason")]
    pub break_glass: bool,
    /// Why (required with --break-glass).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicyDraftRejectArgs {
    /// Draft id.
    pub id: String,
    /// What the author should change.
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct PolicyRollbackArgs {
    /// The version to return to (see `idmint policy history`).
    #[arg(id = "policy_version", value_name = "VERSION")]
    pub version: u64,
    #[arg(long, default_value = "")]
    pub comment: String,
}

const POLICY_TEST_AFTER_HELP: &str = "\
The identity file is either an idmint identity (JSON with kind, subject,
issuer, method, auth, attributes, proof_id, expires_at) or a bare claims
object such as a decoded JWT payload; claims become an identity of kind
`ci` with subject `sub`, issuer `iss`, method `oidc` and auth `test`.

Exits with 0 when allowed, 2 when denied, 1 on errors.

Examples:
  idmint policy test --identity job-claims.json --role demo-api
  idmint policy test --identity admin.json --action admin --policy-dir ./policy";

#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    /// JSON file with an identity or a claims object.
    #[arg(long, value_name = "FILE.json")]
    pub identity: PathBuf,
    /// Role to evaluate (required for --action issue).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Directory with `*.cedar` files and `roles.toml`.
    #[arg(long, value_name = "DIR", default_value = "policy")]
    pub policy_dir: PathBuf,
    /// Cedar action: `issue` (get a credential), `admin`, or the governance
    /// actions `policy::draft` and `policy::approve`.
    #[arg(long, default_value = "issue", value_parser = ["issue", "admin", "policy::draft", "policy::approve"])]
    pub action: String,
    /// Requested lifetime (default: the role's default TTL).
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<String>,
    /// Requested scope; repeat for several (default: the role's scopes).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Requested audience (default: the role's first audience).
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Print a token from the dev server's demo IdP.
    #[command(after_help = DEV_TOKEN_AFTER_HELP)]
    Token(DevTokenArgs),
}

const DEV_TOKEN_AFTER_HELP: &str = "\
The demo IdP starts from the claims of a GitHub Actions job on acme/app's
main branch (repository, ref, actor, event_name, ...); --claim and
--claims-json override or add to them.

Examples:
  idmint dev token | idmint login --token -
  idmint dev token --claim repository=acme/other   # denied by the sample policy
  idmint dev token --subject admin                 # the sample policy's admin
  idmint dev token --claims-json '{\"run_attempt\": 2, \"groups\": [\"ops\"]}'";

#[derive(Debug, Args)]
pub struct DevTokenArgs {
    /// `sub` claim (default: repo:<repository>:ref:<ref>).
    #[arg(long, value_name = "S")]
    pub subject: Option<String>,
    /// A string claim, as KEY=VALUE; repeat for several.
    #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = parse_claim)]
    pub claims: Vec<(String, String)>,
    /// Claims as a JSON object (for numbers, booleans, arrays); --claim wins
    /// on conflicts.
    #[arg(long, value_name = "JSON")]
    pub claims_json: Option<String>,
    /// `aud` claim (default: idmint).
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,
    /// Lifetime of the token in seconds (default 600, at most 3600).
    #[arg(long, value_name = "N")]
    pub ttl_seconds: Option<u64>,
}

const DEMO_AFTER_HELP: &str = "\
Starts a dev server on a free loopback port with a temporary data directory,
then: gets a CI token from the demo IdP, logs in, gets a credential for the
sample role `demo-api`, exchanges the CI token directly (RFC 8693), shows a
request being denied, lists and revokes the lease, and verifies and traces
the audit log. Nothing outside the temporary directory is touched (the
session is not cached).";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the server running afterwards (until Ctrl-C) to try commands by hand.
    #[arg(long)]
    pub keep_running: bool,
}

#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Print AWS credentials for ROLE in the `credential_process` format.
    #[command(after_help = AWS_CREDENTIAL_PROCESS_AFTER_HELP)]
    CredentialProcess(AwsCredentialProcessArgs),
    /// Write a profile using `idmint aws credential-process` to the AWS
    /// config file.
    #[command(after_help = AWS_CONFIGURE_PROFILE_AFTER_HELP)]
    ConfigureProfile(AwsConfigureProfileArgs),
}

const AWS_CREDENTIAL_PROCESS_AFTER_HELP: &str = "\
Prints {\"Version\":1,\"AccessKeyId\",\"SecretAccessKey\",\"SessionToken\",\"Expiration\"}
as the AWS CLI, the SDKs and Terraform expect from a `credential_process`.
Nothing else is written to stdout; errors go to stderr with a non-zero exit.

The credentials are cached in $XDG_CACHE_HOME/idmint/aws/ (or
~/.cache/idmint/aws/): one 0600 file per role and request in a 0700
directory, keyed by server, role, request and the idmint session, and
replaced when less than --refresh-before remains. The file holds the secret
key in clear, protected by its permissions like the AWS CLI's own cache; a
cache file readable by others is refused. --no-cache skips it.

For a `federated` role idmint mints a web-identity token and this command
calls STS AssumeRoleWithWebIdentity itself (--sts-endpoint, --region).

Examples:
  idmint aws credential-process aws/deploy-prod
  idmint aws credential-process aws/deploy-prod --role-arn arn:aws:iam::123456789012:role/deploy";

#[derive(Debug, Args)]
pub struct AwsCredentialProcessArgs {
    /// The AWS role (e.g. aws/deploy-prod).
    pub role: String,
    /// Requested lifetime (e.g. 15m); capped by the role and policy.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<String>,
    /// Requested policy (scope); repeat for several. Default: all of the role's.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// `assumed_role` roles: which of the role's ARNs to assume.
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// Fetch new credentials when less than this remains of the cached ones.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_ttl)]
    pub refresh_before: String,
    /// Do not read or write the local cache.
    #[arg(long)]
    pub no_cache: bool,
    /// `federated` roles: the STS endpoint for AssumeRoleWithWebIdentity
    /// (default: https://sts.REGION.amazonaws.com).
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// `federated` roles: the STS region (default: the role's, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

const AWS_CONFIGURE_PROFILE_AFTER_HELP: &str = "\
Adds or updates [profile NAME] in $AWS_CONFIG_FILE (default ~/.aws/config):
credential_process (this idmint binary, --server and the role), and region and
endpoint_url when given. Other profiles, keys and comments are kept; the file
is replaced atomically and keeps its permissions (0600 when new).

Examples:
  idmint aws configure-profile deploy --role aws/deploy-prod --region eu-west-1
  aws --profile deploy sts get-caller-identity
  AWS_PROFILE=deploy terraform plan";

#[derive(Debug, Args)]
pub struct AwsConfigureProfileArgs {
    /// Profile name (`default` writes [default]).
    pub name: String,
    /// The AWS role the profile gets credentials for.
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Endpoint for every AWS service of the profile (e.g. a test endpoint).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Requested lifetime passed to credential-process.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<String>,
    /// Requested policy (scope) passed to credential-process; repeatable.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Role ARN passed to credential-process.
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// The config file (default $AWS_CONFIG_FILE, else ~/.aws/config).
    #[arg(long, value_name = "FILE", env = "AWS_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
}

fn parse_ttl(s: &str) -> Result<String, String> {
    s.parse::<idmint_core::Ttl>()
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// A role prefix for mass revocation: a blank one would match every lease.
fn parse_prefix(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("the prefix must not be empty: it would match every lease; name a role or a role prefix such as db/orders-readonly".into())
    } else {
        Ok(s.to_string())
    }
}

fn parse_token_type(s: &str) -> Result<TokenType, String> {
    s.parse()
}

fn parse_claim(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("idmint").chain(args.iter().copied()))
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = parse(&[
            "creds",
            "db/orders",
            "--server",
            "https://h:1",
            "-o",
            "env",
            "--scope",
            "a",
            "--scope",
            "b",
        ])
        .unwrap();
        assert_eq!(cli.global.server, "https://h:1");
        assert_eq!(cli.global.output, OutputFormat::Env);
        let Command::Creds(c) = cli.command else {
            panic!("expected creds")
        };
        assert_eq!(
            (c.role.as_str(), c.scopes),
            ("db/orders", vec!["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn ttl_is_validated_while_parsing() {
        let cli = parse(&["creds", "demo-api", "--ttl", "5m"]).unwrap();
        let Command::Creds(c) = cli.command else {
            panic!("expected creds")
        };
        assert_eq!(c.ttl.as_deref(), Some("5m"));
        let e = parse(&["creds", "demo-api", "--ttl", "soon"]).unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{e}");
    }

    #[test]
    fn login_never_takes_a_literal_token() {
        assert!(parse(&["login", "--token", "-"]).is_ok());
        assert!(parse(&["login", "--token", "eyJhbGciOi.x.y"]).is_err());
        assert!(parse(&["login", "--token", "-", "--token-file", "f"]).is_err());
    }

    #[test]
    fn server_needs_config_unless_dev() {
        assert!(parse(&["server"]).is_err());
        assert!(parse(&["server", "--dev"]).is_ok());
        let cli = parse(&[
            "server",
            "--config",
            "idmint.toml",
            "--check-config",
            "--listen",
            "127.0.0.1:9",
        ])
        .unwrap();
        let Command::Server(s) = cli.command else {
            panic!("expected server")
        };
        assert!(s.check_config && s.listen.is_some());
    }

    #[test]
    fn claims_and_token_types() {
        let cli = parse(&["dev", "token", "--claim", "ref=refs/heads/x=y"]).unwrap();
        let Command::Dev(DevCommand::Token(t)) = cli.command else {
            panic!("expected dev token")
        };
        assert_eq!(
            t.claims,
            vec![("ref".to_string(), "refs/heads/x=y".to_string())]
        );
        assert!(parse(&["dev", "token", "--claim", "=x"]).is_err());
        let cli = parse(&[
            "token-exchange",
            "--subject-token-file",
            "-",
            "--audience",
            "a",
            "--subject-token-type",
            "id_token",
        ])
        .unwrap();
        let Command::TokenExchange(t) = cli.command else {
            panic!("expected token-exchange")
        };
        assert_eq!(t.subject_token_type, TokenType::IdToken);
        assert!(parse(&[
            "token-exchange",
            "--subject-token-file",
            "-",
            "--audience",
            "a",
            "--subject-token-type",
            "saml"
        ])
        .is_err());
    }

    fn exec(args: &[&str]) -> Result<ExecArgs, clap::Error> {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        match parse(&all)?.command {
            Command::Exec(e) => Ok(e),
            other => panic!("expected exec, got {other:?}"),
        }
    }

    #[test]
    fn exec_takes_the_command_after_double_dash() {
        let e = exec(&[
            "db/orders",
            "--ttl",
            "5m",
            "--scope",
            "a",
            "--",
            "psql",
            "-c",
            "select 1",
            "--ttl",
        ])
        .unwrap();
        assert_eq!(e.role, "db/orders");
        assert_eq!(e.ttl.as_deref(), Some("5m"));
        assert_eq!(e.scopes, vec!["a".to_string()]);
        // Everything after `--` belongs to the command, flags included.
        assert_eq!(
            e.command,
            ["psql", "-c", "select 1", "--ttl"]
                .map(OsString::from)
                .to_vec()
        );
        assert!(exec(&["db/orders"]).is_err(), "a command is required");
        assert!(exec(&["db/orders", "--"]).is_err(), "a command is required");
        assert!(
            exec(&["db/orders", "psql"]).is_err(),
            "the command must come after --"
        );
        assert!(exec(&["db/orders", "--ttl", "later", "--", "true"]).is_err());
    }

    #[test]
    fn exec_revokes_after_by_default_and_the_last_flag_wins() {
        let revoke = |flags: &[&str]| {
            let mut args = vec!["db/orders"];
            args.extend_from_slice(flags);
            args.extend(["--", "true"]);
            exec(&args).unwrap().revoke_after()
        };
        assert!(revoke(&[]));
        assert!(revoke(&["--revoke-after"]));
        assert!(!revoke(&["--no-revoke-after"]));
        assert!(revoke(&["--no-revoke-after", "--revoke-after"]));
        assert!(!revoke(&["--revoke-after", "--no-revoke-after"]));
    }

    #[test]
    fn leases_renew_and_revoke() {
        let Command::Leases(LeasesCommand::Renew(r)) =
            parse(&["leases", "renew", "lease_1", "--ttl", "15m"])
                .unwrap()
                .command
        else {
            panic!("expected leases renew")
        };
        assert_eq!((r.id.as_str(), r.ttl.as_deref()), ("lease_1", Some("15m")));
        assert!(parse(&["leases", "renew", "lease_1", "--ttl", "x"]).is_err());
        assert!(parse(&["leases", "renew"]).is_err());

        let revoke = |args: &[&str]| {
            let mut all = vec!["leases", "revoke"];
            all.extend_from_slice(args);
            parse(&all).map(|cli| match cli.command {
                Command::Leases(LeasesCommand::Revoke(r)) => (r.id, r.prefix, r.yes),
                other => panic!("expected leases revoke, got {other:?}"),
            })
        };
        assert_eq!(
            revoke(&["lease_1"]).unwrap(),
            (Some("lease_1".into()), None, false)
        );
        assert_eq!(
            revoke(&["--prefix", "db/orders", "--yes"]).unwrap(),
            (None, Some("db/orders".into()), true)
        );
        assert_eq!(
            revoke(&["--prefix", "db/", "-y"]).unwrap(),
            (None, Some("db/".into()), true)
        );
        assert!(revoke(&[]).is_err(), "an id or --prefix is required");
        assert!(revoke(&["lease_1", "--prefix", "db/"]).is_err(), "not both");
        assert!(
            revoke(&["lease_1", "--yes"]).is_err(),
            "--yes is for --prefix"
        );
        for blank in ["", " "] {
            let e = revoke(&["--prefix", blank, "--yes"]).unwrap_err();
            assert!(e.to_string().contains("every lease"), "{e}");
        }
    }

    #[test]
    fn target_rotate_admin_and_uri_output() {
        let cli = parse(&["target", "rotate-admin", "orders-pg", "-o", "json"]).unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        let Command::Target(TargetCommand::RotateAdmin { name }) = cli.command else {
            panic!("expected target rotate-admin")
        };
        assert_eq!(name, "orders-pg");
        assert!(parse(&["target", "rotate-admin"]).is_err());
        let cli = parse(&["creds", "db/orders", "-o", "uri"]).unwrap();
        assert_eq!(cli.global.output, OutputFormat::Uri);
    }

    #[test]
    fn help_has_examples_for_the_new_commands() {
        let mut cmd = Cli::command();
        for path in [
            &["exec"][..],
            &["creds"],
            &["leases", "renew"],
            &["leases", "revoke"],
            &["target", "rotate-admin"],
        ] {
            let mut sub = &mut cmd;
            for name in path {
                sub = sub
                    .find_subcommand_mut(name)
                    .unwrap_or_else(|| panic!("no subcommand {path:?}"));
            }
            let help = sub.render_long_help().to_string();
            assert!(help.contains("Examples:"), "{path:?}: {help}");
        }
    }

    #[test]
    fn server_default_and_env_name() {
        let cli = parse(&["whoami"]).unwrap();
        // IDMINT_ADDR may be set in a developer's shell; only check the
        // default when it is not.
        if std::env::var_os("IDMINT_ADDR").is_none() {
            assert_eq!(cli.global.server, DEFAULT_SERVER);
        }
        let help = Cli::command().render_help().to_string();
        assert!(
            help.contains("IDMINT_ADDR") && help.contains("IDMINT_TOKEN"),
            "{help}"
        );
    }
}
