//! Service functions: what the API, the CLI and the scheduler call. Each one opens its own
//! short transaction, checks what it needs against stored state, writes the change together
//! with its event (the outbox), and commits.

pub mod alerts;
pub mod api_keys;
pub mod balances;
pub mod catalogue;
pub mod clock;
pub mod customers;
pub mod documents;
pub mod einvoice;
pub mod email;
pub mod exports;
pub mod invoices;
pub mod journal;
pub mod payments;
pub mod privacy;
pub mod provider_accounts;
pub mod reports;
pub mod secrets;
pub mod subscriptions;
pub mod tenants;
pub mod usage;
pub mod webhooks;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A field is present but not acceptable.
    #[error("{message}")]
    InvalidParam { param: String, message: String },
    /// A required field is absent.
    #[error("missing required parameter: {param}")]
    MissingParam { param: String },
    /// An id in the path (`param` None) or in the body (`param` names the field) is unknown.
    #[error("no such {kind}: '{id}'")]
    MissingResource {
        kind: &'static str,
        id: String,
        param: Option<String>,
    },
    /// Well-formed input that the stored state does not allow (wrong currency, state machine).
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// Records of a batch that were refused, by their index in the batch; nothing was written.
    #[error("{} records of the batch were refused; nothing was recorded", .0.len())]
    Batch(Vec<(usize, ServiceError)>),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A document could not be rendered or stored (template, font, disk).
    #[error("document: {0}")]
    Document(String),
    /// A secret could not be sealed or opened (the master key is missing or wrong).
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
}

impl ServiceError {
    pub fn invalid(param: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ServiceError::InvalidParam {
            param: param.into(),
            message: message.to_string(),
        }
    }

    pub fn unprocessable(
        code: &'static str,
        param: Option<&str>,
        message: impl std::fmt::Display,
    ) -> Self {
        ServiceError::Unprocessable {
            code,
            message: message.to_string(),
            param: param.map(str::to_owned),
        }
    }

    pub fn missing_in_body(
        kind: &'static str,
        id: impl std::fmt::Display,
        param: impl Into<String>,
    ) -> Self {
        ServiceError::MissingResource {
            kind,
            id: id.to_string(),
            param: Some(param.into()),
        }
    }

    pub fn not_found(kind: &'static str, id: impl std::fmt::Display) -> Self {
        ServiceError::MissingResource {
            kind,
            id: id.to_string(),
            param: None,
        }
    }
}
