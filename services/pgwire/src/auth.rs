//! The startup handshake: the client's user name is a platform user's email; the server asks for
//! a cleartext password and signs the user in through the platform (argon2 verification off the
//! I/O runtime, as `POST /api/auth/login` does), or accepts an access token (JWT) of that user as
//! the password. The connection then runs as that [`Principal`].

use std::fmt::{self, Debug};
use std::sync::Arc;

use async_trait::async_trait;
use futures::sink::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    AuthDriver, AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, ConnectionManager};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use thinglake_platform::{Error as PlatformError, Platform, Principal};
use tracing::debug;

use crate::error::from_platform;
use crate::session::SERVER_VERSION;

/// Signs users in against the platform.
struct PlatformAuth {
    platform: Platform,
}

impl Debug for PlatformAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlatformAuth")
    }
}

/// Whether a password is an access token rather than a password: three base64url parts.
fn looks_like_jwt(password: &str) -> bool {
    let parts: Vec<&str> = password.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

// The trait's `&LoginInfo` has a late-bound lifetime that `LoginInfo<'_>` would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl AuthSource<Principal> for PlatformAuth {
    /// Never asked for: passwords are verified through [`Self::verify_password`], the platform
    /// keeps only their hashes.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_owned()))
    }

    async fn verify_password(&self, login: &LoginInfo, presented: &[u8]) -> PgWireResult<Option<Principal>> {
        let user = login.user().ok_or(PgWireError::UserNameRequired)?;
        let refused = || PgWireError::InvalidPassword(user.to_owned());
        let password = std::str::from_utf8(presented).map_err(|_| refused())?;
        // A token counts only for the user it was issued to; anything else is a password.
        let by_token = looks_like_jwt(password)
            .then(|| self.platform.principal_of(password).ok())
            .flatten()
            .filter(|p| p.email.eq_ignore_ascii_case(user));
        let signed_in = match by_token {
            Some(principal) => Ok(principal),
            None => {
                // The peer's address, as the platform's sign-in throttle counts it.
                let client = login.host().parse().unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
                self.platform.sign_in(user, password, client).await
            }
        };
        match signed_in {
            Ok(principal) => {
                debug!(user, "signed in over the PostgreSQL protocol");
                Ok(Some(principal))
            }
            Err(PlatformError::Unauthorized { .. } | PlatformError::TokenExpired) => Err(refused()),
            Err(other) => Err(from_platform(other)),
        }
    }
}

/// The startup handler: cleartext password, then the connection's [`Principal`] kept in its
/// session extensions, and its cancel key registered.
pub struct Startup {
    driver: AuthDriver<DefaultServerParameterProvider, Principal>,
    cleartext: CleartextPasswordAuth<PlatformAuth>,
}

impl Startup {
    pub fn new(platform: Platform, connections: Arc<ConnectionManager>) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = SERVER_VERSION.to_string();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        parameters.time_zone = "UTC".to_string();
        Self {
            driver: AuthDriver::new(parameters).with_connection_manager(connections),
            cleartext: CleartextPasswordAuth::new(Arc::new(PlatformAuth { platform })),
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if client.metadata().get(pgwire::api::METADATA_USER).is_none() {
                    return Err(PgWireError::UserNameRequired);
                }
                self.driver.begin_authentication(client, self.cleartext.create()).await?
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => self.driver.advance_authentication(client, message).await?,
            _ => return Ok(()),
        };
        match outcome {
            AuthOutcome::InProgress => Ok(()),
            AuthOutcome::Authenticated { identity: Some(principal), final_message } => {
                client.session_extensions().insert(principal);
                self.driver.complete_authentication(client, final_message).await
            }
            AuthOutcome::Authenticated { identity: None, .. } => {
                Err(PgWireError::InvalidPassword(client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_told_from_passwords() {
        assert!(looks_like_jwt("eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhQGIuYyJ9.c2lnbmF0dXJl"));
        assert!(!looks_like_jwt("correct horse battery"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("pass.word.with spaces"));
    }
}
