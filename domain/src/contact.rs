//! Contact details shared by tenants and customers, as ThingsBoard keeps them.

use serde::{Deserialize, Serialize};

use crate::error::{Result, check_len};

/// Postal and contact fields; all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub address2: Option<String>,
    #[serde(default)]
    pub zip: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

impl Contact {
    pub fn validate(&self) -> Result<()> {
        let fields = [
            ("country", &self.country),
            ("state", &self.state),
            ("city", &self.city),
            ("address", &self.address),
            ("address2", &self.address2),
            ("zip", &self.zip),
            ("phone", &self.phone),
            ("email", &self.email),
        ];
        for (field, value) in fields {
            if let Some(v) = value {
                check_len(field, v, 255)?;
            }
        }
        Ok(())
    }
}
