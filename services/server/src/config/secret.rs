//! [`Secret`]: a configured secret that no log line can show.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// A password, signing key or access key from the configuration. `Debug` and `Display` print
/// `***`, so the logged configuration says that it is set, never what it is; [`Secret::expose`]
/// hands the value to the one place that uses it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `None` for an empty secret: an empty variable or key means unset.
    pub(crate) fn non_empty(secret: Option<Secret>) -> Option<Secret> {
        secret.filter(|s| !s.0.is_empty())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_string()))
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self(text.to_string())
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_prints_as_stars_and_an_empty_one_is_unset() {
        let secret = Secret::from("hunter2");
        assert_eq!((format!("{secret}"), format!("{secret:?}"), format!("{:?}", Some(&secret))), ("***".into(), "***".into(), "Some(***)".into()));
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(Secret::non_empty(Some(Secret::from(""))), None);
    }
}
