//! Customers: who is billed, in which currency and language, and how they pay.

use super::contact::{Address, Email, Locale, TaxId};
use super::currency::Currency;
use super::ids::CustomerId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How tax applies to a customer (Stripe's `tax_exempt`). `Reverse` charges no tax and the
/// invoice says "reverse charge": the buyer accounts for VAT (EU B2B cross-border).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaxExempt {
    #[default]
    None,
    Exempt,
    Reverse,
}

impl TaxExempt {
    pub fn as_str(self) -> &'static str {
        match self {
            TaxExempt::None => "none",
            TaxExempt::Exempt => "exempt",
            TaxExempt::Reverse => "reverse",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(TaxExempt::None),
            "exempt" => Some(TaxExempt::Exempt),
            "reverse" => Some(TaxExempt::Reverse),
            _ => None,
        }
    }
}

/// Payment providers recur can charge through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Sandbox,
    Stripe,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Sandbox => "sandbox",
            Provider::Stripe => "stripe",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sandbox" => Some(Provider::Sandbox),
            "stripe" => Some(Provider::Stripe),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PaymentMethodError {
    #[error("unknown payment provider `{0}` (expected sandbox or stripe)")]
    UnknownProvider(String),
    #[error("`{0}` is not a {1} payment method token")]
    BadToken(String, &'static str),
    #[error(
        "a stripe payment method needs the Stripe customer it is attached to (`customer`: cus_…)"
    )]
    MissingCustomer,
    #[error("`{0}` is not a Stripe customer id (cus_…)")]
    BadCustomer(String),
    #[error("only stripe payment methods name a provider customer")]
    UnexpectedCustomer,
}

/// A provider token for a payment method. Card data never enters recur (DESIGN invariant 8):
/// only opaque provider references such as `pm_…` (Stripe) or `tok_…` (sandbox) are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub provider: Provider,
    pub token: String,
    /// The customer at the provider the method is attached to (Stripe `cus_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// `prefix` followed by 1..=250 letters, digits or underscores.
fn provider_id(s: &str, prefix: &str) -> bool {
    s.len() <= 255
        && s.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

impl PaymentMethod {
    pub fn parse(
        provider: &str,
        token: &str,
        customer: Option<&str>,
    ) -> Result<Self, PaymentMethodError> {
        let provider = Provider::parse(provider)
            .ok_or_else(|| PaymentMethodError::UnknownProvider(provider.to_owned()))?;
        let prefix = match provider {
            Provider::Sandbox => "tok_",
            Provider::Stripe => "pm_",
        };
        if !provider_id(token, prefix) {
            return Err(PaymentMethodError::BadToken(
                token.to_owned(),
                provider.as_str(),
            ));
        }
        let customer = match (provider, customer) {
            (Provider::Stripe, None) => return Err(PaymentMethodError::MissingCustomer),
            (Provider::Stripe, Some(c)) if !provider_id(c, "cus_") => {
                return Err(PaymentMethodError::BadCustomer(c.to_owned()));
            }
            (Provider::Sandbox, Some(_)) => return Err(PaymentMethodError::UnexpectedCustomer),
            (_, c) => c.map(str::to_owned),
        };
        Ok(Self {
            provider,
            token: token.to_owned(),
            customer,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Customer {
    pub id: CustomerId,
    pub object: &'static str,
    pub external_id: Option<String>,
    pub name: String,
    pub email: Option<Email>,
    pub currency: Option<Currency>,
    pub locale: Option<Locale>,
    pub address: Option<Address>,
    pub tax_ids: Vec<TaxId>,
    pub tax_exempt: TaxExempt,
    pub payment_method: Option<PaymentMethod>,
    /// The credit balance in the customer's currency (or the one currency it has a balance
    /// in): negative is credit the next invoices use, positive is owed. Kept in
    /// `customer_balances`; filled in when the customer is read for the API.
    pub balance: i64,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// Set when the customer's personal data was erased (`POST /v1/customers/{id}/erase`);
    /// such a customer cannot be changed or subscribed again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<DateTime<Utc>>,
}

/// The changes a PATCH may make; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerPatch {
    pub external_id: Option<Option<String>>,
    pub name: Option<String>,
    pub email: Option<Option<Email>>,
    pub currency: Option<Option<Currency>>,
    pub locale: Option<Option<Locale>>,
    pub address: Option<Option<Address>>,
    pub tax_ids: Option<Vec<TaxId>>,
    pub tax_exempt: Option<TaxExempt>,
    pub payment_method: Option<Option<PaymentMethod>>,
}

impl Customer {
    pub fn apply(&mut self, p: CustomerPatch, now: DateTime<Utc>) {
        if let Some(v) = p.external_id {
            self.external_id = v;
        }
        if let Some(v) = p.name {
            self.name = v;
        }
        if let Some(v) = p.email {
            self.email = v;
        }
        if let Some(v) = p.currency {
            self.currency = v;
        }
        if let Some(v) = p.locale {
            self.locale = v;
        }
        if let Some(v) = p.address {
            self.address = v;
        }
        if let Some(v) = p.tax_ids {
            self.tax_ids = v;
        }
        if let Some(v) = p.tax_exempt {
            self.tax_exempt = v;
        }
        if let Some(v) = p.payment_method {
            self.payment_method = v;
        }
        self.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_methods_are_provider_tokens_never_card_numbers() {
        assert!(PaymentMethod::parse("sandbox", "tok_visa", None).is_ok());
        assert!(PaymentMethod::parse("stripe", "pm_card_visa", Some("cus_1")).is_ok());
        assert!(PaymentMethod::parse("sandbox", "4242424242424242", None).is_err());
        assert!(PaymentMethod::parse("stripe", "tok_visa", Some("cus_1")).is_err());
        assert!(PaymentMethod::parse("paypal", "x", None).is_err());
        assert!(PaymentMethod::parse("sandbox", "tok_", None).is_err());
        assert_eq!(
            PaymentMethod::parse("stripe", "pm_card_visa", None),
            Err(PaymentMethodError::MissingCustomer)
        );
        assert!(PaymentMethod::parse("stripe", "pm_card_visa", Some("acct_1")).is_err());
        assert!(PaymentMethod::parse("sandbox", "tok_visa", Some("cus_1")).is_err());
    }
}
