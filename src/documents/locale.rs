//! The languages documents are written in: labels and the number, amount and date
//! conventions of each, read from `templates/locales/{lang}.toml` (compiled in). Formatting is
//! pure and does not depend on the machine's locale.

use crate::domain::currency::Currency;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Languages with a locale file; the first is the fallback.
const FILES: [(&str, &str); 5] = [
    ("en", include_str!("../../templates/locales/en.toml")),
    ("de", include_str!("../../templates/locales/de.toml")),
    ("fr", include_str!("../../templates/locales/fr.toml")),
    ("pl", include_str!("../../templates/locales/pl.toml")),
    ("es", include_str!("../../templates/locales/es.toml")),
];

/// The language codes documents can be written in.
pub fn supported() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(code, _)| *code)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberFormat {
    pub decimal: String,
    pub group: String,
    pub min_grouping_digits: usize,
    pub currency_first: bool,
    pub percent_space: bool,
    pub date_format: String,
}

/// Every label a document, e-mail or page prints. A missing or unknown key in a locale file
/// fails the `locale_files_are_complete` test, not a customer's invoice.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    pub invoice: String,
    pub credit_note: String,
    pub draft: String,
    pub draft_notice: String,
    pub number: String,
    pub credit_note_number: String,
    pub issue_date: String,
    pub due_date: String,
    pub service_period: String,
    pub seller: String,
    pub buyer: String,
    pub vat_id: String,
    pub tax_id: String,
    pub description: String,
    pub period: String,
    pub quantity: String,
    pub unit_price: String,
    pub amount: String,
    pub proration: String,
    pub credit: String,
    pub usage: String,
    pub subtotal: String,
    pub discount: String,
    pub tax_summary: String,
    pub taxable_amount: String,
    pub rate: String,
    pub tax: String,
    pub total: String,
    pub amount_paid: String,
    pub amount_credited: String,
    pub balance_applied: String,
    pub amount_due: String,
    pub status: String,
    pub status_draft: String,
    pub status_open: String,
    pub status_paid: String,
    pub status_void: String,
    pub status_uncollectible: String,
    pub payment_instructions: String,
    pub pay_by_transfer: String,
    pub reference: String,
    pub account_holder: String,
    pub iban: String,
    pub bic: String,
    pub account_number: String,
    pub reverse_charge: String,
    pub exempt: String,
    pub corrects_invoice: String,
    pub reason: String,
    pub reason_duplicate: String,
    pub reason_fraudulent: String,
    pub reason_order_change: String,
    pub reason_product_unsatisfactory: String,
    pub credited_lines: String,
    pub credit_total: String,
    pub refunded: String,
    pub credited_to_balance: String,
    pub page: String,
    pub download_pdf: String,
    pub hosted_title: String,
}

/// The wording of customer e-mails; `{placeholders}` are filled in when composing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailLabels {
    pub subject_invoice: String,
    pub subject_receipt: String,
    pub subject_failed: String,
    pub subject_credit_note: String,
    pub subject_trial: String,
    pub subject_renewal: String,
    pub greeting: String,
    pub invoice_body: String,
    pub invoice_due: String,
    pub invoice_autopay: String,
    pub invoice_paid: String,
    pub receipt_body: String,
    pub failed_body: String,
    pub failed_retry: String,
    pub failed_no_retry: String,
    pub failed_update: String,
    pub credit_note_body: String,
    pub trial_body: String,
    pub renewal_body: String,
    pub next_amount: String,
    pub view_online: String,
    pub update_payment_method: String,
    pub signature: String,
    pub decline_insufficient_funds: String,
    pub decline_expired_card: String,
    pub decline_authentication_required: String,
    pub decline_generic: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lang {
    pub format: NumberFormat,
    pub labels: Labels,
    pub email: EmailLabels,
    #[serde(skip)]
    pub code: &'static str,
}

static LANGS: LazyLock<HashMap<&'static str, Lang>> = LazyLock::new(|| {
    FILES
        .iter()
        .filter_map(|(code, text)| match toml::from_str::<Lang>(text) {
            Ok(mut lang) => {
                lang.code = code;
                Some((*code, lang))
            }
            Err(e) => {
                tracing::error!(locale = code, error = %e, "locale file is invalid; documents fall back to English");
                None
            }
        })
        .collect()
});

/// English, the fallback of every lookup.
static ENGLISH: LazyLock<Lang> = LazyLock::new(|| {
    toml::from_str::<Lang>(FILES[0].1)
        .map(|mut l| {
            l.code = FILES[0].0;
            l
        })
        .unwrap_or_else(|e| panic!("templates/locales/en.toml is invalid: {e}"))
});

/// The language for a BCP 47 tag (`pl-PL` → `pl`), trying each candidate in order (the
/// customer's locale, then the tenant's), English when none is supported.
pub fn lang<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> &'static Lang {
    candidates
        .into_iter()
        .flatten()
        .find_map(|tag| {
            let code = tag.split('-').next().unwrap_or(tag);
            if code == FILES[0].0 {
                Some(&*ENGLISH)
            } else {
                LANGS.get(code)
            }
        })
        .unwrap_or(&ENGLISH)
}

/// The sign readers expect for a currency; other currencies print their ISO code.
fn symbol(currency: &Currency) -> &str {
    match currency.code() {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        "JPY" => "¥",
        "PLN" => "zł",
        "CZK" => "Kč",
        "INR" => "₹",
        code => code,
    }
}

const NBSP: char = '\u{a0}';

impl Lang {
    /// Digits with the language's grouping, e.g. `1234567` → `1 234 567` in Polish.
    fn group_digits(&self, digits: &str) -> String {
        let f = &self.format;
        if digits.len() < f.min_grouping_digits {
            return digits.to_owned();
        }
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 * f.group.len());
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push_str(&f.group);
            }
            out.push(ch);
        }
        out
    }

    /// A decimal with the language's separators and exactly `min_decimals` decimals or more
    /// (the value's own scale, for unit prices finer than the minor unit).
    pub fn number(&self, value: Decimal, min_decimals: u32) -> String {
        let v = value.normalize();
        let scale = v.scale().max(min_decimals);
        let text = v.abs().round_dp(scale).to_string();
        let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
        let mut out = String::new();
        if v.is_sign_negative() && !v.is_zero() {
            out.push('-');
        }
        out.push_str(&self.group_digits(int));
        if scale > 0 {
            out.push_str(&self.format.decimal);
            out.push_str(frac);
            for _ in frac.len()..scale as usize {
                out.push('0');
            }
        }
        out
    }

    /// An amount in minor units, with the currency's decimals and sign in the language's
    /// place: `€1,234.50`, `1.234,50 €`, `1 234,50 zł`, `¥1,235`, `1,235 KWD`.
    pub fn money(&self, minor: i64, currency: &Currency) -> String {
        let major = Decimal::from_i128_with_scale(i128::from(minor), currency.exponent());
        self.amount_with_sign(major, currency.exponent(), currency)
    }

    /// A unit price given in minor units (possibly fractional), in major units.
    pub fn unit_price(&self, minor: Decimal, currency: &Currency) -> String {
        let mut major = minor;
        major.set_scale(minor.scale() + currency.exponent()).ok();
        self.amount_with_sign(major, currency.exponent(), currency)
    }

    fn amount_with_sign(&self, major: Decimal, decimals: u32, currency: &Currency) -> String {
        let number = self.number(major.abs(), decimals);
        let sign = symbol(currency);
        let minus = if major.is_sign_negative() && !major.is_zero() {
            "-"
        } else {
            ""
        };
        let letters = sign.chars().any(char::is_alphabetic);
        if self.format.currency_first {
            if letters {
                format!("{minus}{sign}{NBSP}{number}")
            } else {
                format!("{minus}{sign}{number}")
            }
        } else {
            format!("{minus}{number}{NBSP}{sign}")
        }
    }

    /// A tax rate as a percentage: `23%`, `19 %`, `7,5 %`.
    pub fn percent(&self, rate: Decimal) -> String {
        let n = self.number(rate, 0);
        if self.format.percent_space {
            format!("{n}{NBSP}%")
        } else {
            format!("{n}%")
        }
    }

    pub fn date(&self, at: DateTime<Utc>) -> String {
        at.format(&self.format.date_format).to_string()
    }

    /// A service period as people read it: from the first day to the last day included
    /// (stored periods end at the next period's start, exclusive).
    pub fn period(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
        let last = if end > start {
            end - Duration::seconds(1)
        } else {
            end
        };
        let (a, b) = (self.date(start), self.date(last));
        if a == b { a } else { format!("{a} – {b}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn locale_files_are_complete() {
        for (code, text) in FILES {
            if let Err(e) = toml::from_str::<Lang>(text) {
                panic!("templates/locales/{code}.toml: {e}");
            }
        }
        assert_eq!(LANGS.len(), FILES.len());
    }

    #[test]
    fn languages_fall_back_in_order() {
        assert_eq!(lang([Some("pl-PL"), Some("de")]).code, "pl");
        assert_eq!(lang([Some("ja"), Some("de")]).code, "de");
        assert_eq!(lang([None, Some("sv")]).code, "en");
    }

    #[test]
    fn amounts_follow_each_language_and_currency() {
        let en = lang([Some("en")]);
        let de = lang([Some("de")]);
        let fr = lang([Some("fr")]);
        let pl = lang([Some("pl")]);
        let es = lang([Some("es")]);
        assert_eq!(en.money(123_450, &c("EUR")), "€1,234.50");
        assert_eq!(en.money(-99, &c("USD")), "-$0.99");
        assert_eq!(en.money(123_456, &c("PLN")), "zł\u{a0}1,234.56");
        assert_eq!(de.money(123_450, &c("EUR")), "1.234,50\u{a0}€");
        assert_eq!(fr.money(123_450, &c("EUR")), "1 234,50\u{a0}€");
        assert_eq!(pl.money(12_345_678, &c("PLN")), "123 456,78\u{a0}zł");
        assert_eq!(es.money(123_450, &c("EUR")), "1234,50\u{a0}€");
        assert_eq!(es.money(1_234_500, &c("EUR")), "12.345,00\u{a0}€");
        assert_eq!(en.money(1235, &c("JPY")), "¥1,235");
        assert_eq!(de.money(1_234_567, &c("KWD")), "1.234,567\u{a0}KWD");
        assert_eq!(en.money(0, &c("EUR")), "€0.00");
    }

    #[test]
    fn unit_prices_keep_fractions_of_the_minor_unit() {
        let en = lang([Some("en")]);
        assert_eq!(en.unit_price(Decimal::new(12505, 1), &c("EUR")), "€12.505");
        assert_eq!(en.unit_price(Decimal::from(2000), &c("EUR")), "€20.00");
        assert_eq!(en.unit_price(Decimal::from(500), &c("JPY")), "¥500");
    }

    #[test]
    fn percentages_and_dates() {
        let t = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let e = DateTime::parse_from_rfc3339("2026-04-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            lang([Some("de")]).percent(Decimal::new(75, 1)),
            "7,5\u{a0}%"
        );
        assert_eq!(lang([Some("pl")]).percent(Decimal::from(23)), "23%");
        assert_eq!(
            lang([Some("en")]).period(t, e),
            "Mar 1, 2026 – Mar 31, 2026"
        );
        assert_eq!(lang([Some("pl")]).period(t, e), "01.03.2026 – 31.03.2026");
    }

    proptest! {
        /// Whatever the amount, stripping the grouping and reading the decimal separator
        /// gives back exactly the minor units.
        #[test]
        fn formatted_amounts_read_back_exactly(minor in -10_i64.pow(15)..10_i64.pow(15), which in 0usize..5, cur in prop::sample::select(vec!["EUR", "JPY", "KWD", "PLN"])) {
            let l = lang([Some(FILES[which].0)]);
            let currency = c(cur);
            let text = l.money(minor, &currency);
            let digits: String = text
                .replace(&l.format.group, "")
                .replace(&l.format.decimal, ".")
                .chars()
                .filter(|ch| ch.is_ascii_digit() || *ch == '.' || *ch == '-')
                .collect();
            let back: Decimal = digits.parse().unwrap();
            prop_assert_eq!(back, Decimal::from_i128_with_scale(i128::from(minor), currency.exponent()));
        }
    }
}
