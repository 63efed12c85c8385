//! Reading columns the same way from SQLite and PostgreSQL rows, so that turning a row into a
//! domain value is written once per aggregate rather than once per backend.

use super::StoreError;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::Row;

pub trait Rec {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn flag(&self, col: &str) -> Result<bool, StoreError>;
    fn time(&self, col: &str) -> Result<DateTime<Utc>, StoreError>;
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Parses a TEXT column with a domain parser; a failure means the row was written by
    /// something other than recur.
    fn parsed<T, E: std::fmt::Display>(
        &self,
        col: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, StoreError> {
        let s = self.text(col)?;
        parse(&s).map_err(|e| corrupt(col, e))
    }

    fn opt_parsed<T, E: std::fmt::Display>(
        &self,
        col: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, StoreError> {
        self.opt_text(col)?
            .map(|s| parse(&s).map_err(|e| corrupt(col, e)))
            .transpose()
    }

    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T, StoreError> {
        let s = self.text(col)?;
        serde_json::from_str(&s).map_err(|e| corrupt(col, e))
    }

    fn opt_json<T: DeserializeOwned>(&self, col: &str) -> Result<Option<T>, StoreError> {
        self.opt_text(col)?
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(col, e)))
            .transpose()
    }
}

/// JSON documents are stored as TEXT on both backends.
pub fn to_json(v: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt("json", e))
}

pub fn corrupt(col: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        column: col.to_owned(),
        detail: detail.to_string(),
    }
}

/// Parses with an `Option`-returning parser (enum names), naming the column on failure.
pub fn known<T>(parse: impl Fn(&str) -> Option<T>) -> impl Fn(&str) -> Result<T, String> {
    move |s| parse(s).ok_or_else(|| format!("unknown value `{s}`"))
}

macro_rules! impl_rec {
    ($row:ty) => {
        impl Rec for $row {
            fn text(&self, col: &str) -> Result<String, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn int(&self, col: &str) -> Result<i64, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn flag(&self, col: &str) -> Result<bool, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn time(&self, col: &str) -> Result<DateTime<Utc>, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
                Ok(self.try_get(col)?)
            }
        }
    };
}

impl_rec!(sqlx::sqlite::SqliteRow);
impl_rec!(sqlx::postgres::PgRow);

/// Converts an unsigned domain count to the signed BIGINT columns both backends have.
pub fn to_db_int(v: u64, col: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|e| corrupt(col, e))
}

pub fn from_db_uint(v: i64, col: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|e| corrupt(col, e))
}
