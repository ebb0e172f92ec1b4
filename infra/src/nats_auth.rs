//! Who may talk to NATS, and how the platform signs in.
//!
//! The supervised nats-server ([`crate::nats_server`]) refuses anonymous clients. Its two users
//! have random passwords generated on first start and kept in `<data_dir>/nats/credentials.json`
//! (mode 0600, in a 0700 directory, beside the JetStream store that needs the same protection):
//!
//! - [`PLATFORM_USER`]: the platform's own connections, with every right. Its connections use
//!   their own reply prefix ([`PLATFORM_INBOX_PREFIX`]), so no other user can subscribe to the
//!   answers the platform gets (JetStream reads, the signing key among them).
//! - [`INGRESS_USER`]: for devices and services that use the NATS ingress. It may publish to
//!   `<prefix>.ingress.>` and subscribe to `_INBOX.>` for the replies, nothing else: no stream,
//!   bucket or JetStream API, no event subject, no ingress subject of another device.
//!
//! For an external server (`THINGLAKE_NATS_URL`) the platform signs in with the credentials in
//! that URL: `nats://user:password@host:4222` or `nats://token@host:4222` ([`client_options`]).

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;
use serde::{Deserialize, Serialize};

use crate::auth::random_token;
use crate::error::{Error, Result};

/// File of the supervised server's credentials, in its directory (`<data_dir>/nats`).
pub const CREDENTIALS_FILE: &str = "credentials.json";
/// The platform's user on the supervised server.
pub const PLATFORM_USER: &str = "thinglake";
/// The NATS ingress clients' user on the supervised server.
pub const INGRESS_USER: &str = "ingress";
/// Reply subjects of the platform's connections (instead of `_INBOX`, which ingress clients
/// may subscribe to).
pub const PLATFORM_INBOX_PREFIX: &str = "_THINGLAKE_INBOX";
/// Characters of a generated password (about 190 bits).
const PASSWORD_LENGTH: usize = 32;

/// A user name and password. Never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPassword {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for UserPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPassword").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

/// The supervised server's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsCredentials {
    pub platform: UserPassword,
    pub ingress: UserPassword,
}

impl NatsCredentials {
    /// Fresh random passwords.
    pub fn generate() -> Self {
        let user = |name: &str| UserPassword { user: name.to_string(), password: random_token(PASSWORD_LENGTH) };
        Self { platform: user(PLATFORM_USER), ingress: user(INGRESS_USER) }
    }

    /// The credentials kept in `nats_dir`, if any.
    pub fn load(nats_dir: &Path) -> Result<Option<Self>> {
        let path = nats_dir.join(CREDENTIALS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| Error::Credentials { path, source })
    }

    /// The credentials kept in `nats_dir`, generated and written (0600) on first start. The
    /// directory is made private (0700): the JetStream store in it holds the JWT signing key.
    pub fn load_or_create(nats_dir: &Path) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(nats_dir).map_err(io(nats_dir))?;
        std::fs::set_permissions(nats_dir, std::fs::Permissions::from_mode(0o700)).map_err(io(nats_dir))?;
        if let Some(existing) = Self::load(nats_dir)? {
            return Ok(existing);
        }
        let created = Self::generate();
        let path: PathBuf = nats_dir.join(CREDENTIALS_FILE);
        let json = serde_json::to_string_pretty(&created).expect("credentials of two strings each serialize");
        write_private(&path, json.as_bytes())?;
        Ok(created)
    }
}

/// Writes a file only its owner may read (0600), replacing it.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file =
        std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path).map_err(io)?;
    // `mode` applies only to a new file; an existing one is narrowed too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Connect options for the platform's connections to `url`, and the URL without credentials
/// (for logs and `connect`). Credentials come from `signed_in` (the supervised server's platform
/// user) or from the URL's user part: `user:password@` (percent-encoded) or `token@`.
pub fn client_options(url: &str, signed_in: Option<&UserPassword>) -> (ConnectOptions, String) {
    let (bare, from_url) = split_credentials(url);
    let options = ConnectOptions::new().custom_inbox_prefix(PLATFORM_INBOX_PREFIX);
    let options = match (signed_in, from_url) {
        (Some(up), _) => options.user_and_password(up.user.clone(), up.password.clone()),
        (None, Some(UrlCredentials::UserPassword(user, password))) => options.user_and_password(user, password),
        (None, Some(UrlCredentials::Token(token))) => options.token(token),
        (None, None) => options,
    };
    (options, bare)
}

/// Credentials carried in a NATS URL.
#[derive(Debug, PartialEq, Eq)]
enum UrlCredentials {
    UserPassword(String, String),
    Token(String),
}

/// Takes the credentials out of a URL (or comma-separated list of URLs: the first with any).
fn split_credentials(url: &str) -> (String, Option<UrlCredentials>) {
    let mut found = None;
    let bare: Vec<String> = url
        .split(',')
        .map(|one| {
            let one = one.trim();
            let (scheme, rest) = one.split_once("://").map_or(("", one), |(s, r)| (s, r));
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let Some(at) = rest[..authority_end].rfind('@') else { return one.to_string() };
            let userinfo = &rest[..at];
            if found.is_none() {
                found = Some(match userinfo.split_once(':') {
                    Some((user, password)) => UrlCredentials::UserPassword(percent_decode(user), percent_decode(password)),
                    None => UrlCredentials::Token(percent_decode(userinfo)),
                });
            }
            let host = &rest[at + 1..];
            if scheme.is_empty() { host.to_string() } else { format!("{scheme}://{host}") }
        })
        .collect();
    (bare.join(","), found)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_the_url() {
        let (bare, creds) = split_credentials("nats://plat:p%40ss@nats.example.com:4222");
        assert_eq!(bare, "nats://nats.example.com:4222");
        assert_eq!(creds, Some(UrlCredentials::UserPassword("plat".into(), "p@ss".into())));
        let (bare, creds) = split_credentials("tls://s3cr3t@a:4222, nats://b:4222");
        assert_eq!(bare, "tls://a:4222,nats://b:4222");
        assert_eq!(creds, Some(UrlCredentials::Token("s3cr3t".into())));
        assert_eq!(split_credentials("nats://127.0.0.1:4222"), ("nats://127.0.0.1:4222".into(), None));
    }

    #[test]
    fn credentials_are_kept_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nats_dir = dir.path().join("nats");
        let first = NatsCredentials::load_or_create(&nats_dir).expect("created");
        assert_eq!(NatsCredentials::load_or_create(&nats_dir).expect("loaded"), first);
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&nats_dir.join(CREDENTIALS_FILE)), 0o600);
        assert_eq!(mode(&nats_dir), 0o700);
        assert_ne!(first.platform.password, first.ingress.password);
        assert!(!format!("{first:?}").contains(&first.platform.password));
    }
}
