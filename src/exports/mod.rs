//! Finance exports: the billing history as rows for a spreadsheet or an accounting import.
//! Pure: what the kinds and columns are, how a record becomes a row, and how rows are written
//! as CSV (RFC 4180, header row, UTF-8, spreadsheet-safe) or JSON lines. Reading the records
//! in batches is `services::exports`' business.

use crate::domain::credit_note::CreditNote;
use crate::domain::currency::Currency;
use crate::domain::customer::Customer;
use crate::domain::invoice::{Invoice, TaxAmount};
use crate::domain::journal::Entry;
use crate::domain::payment::Payment;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invoices,
    InvoiceLines,
    Payments,
    CreditNotes,
    Journal,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "invoices" => Some(Kind::Invoices),
            "invoice-lines" => Some(Kind::InvoiceLines),
            "payments" => Some(Kind::Payments),
            "credit-notes" => Some(Kind::CreditNotes),
            "journal" => Some(Kind::Journal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Invoices => "invoices",
            Kind::InvoiceLines => "invoice-lines",
            Kind::Payments => "payments",
            Kind::CreditNotes => "credit-notes",
            Kind::Journal => "journal",
        }
    }

    /// The header row (the README documents each column).
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Invoices => &[
                "tenant_id",
                "invoice_id",
                "number",
                "status",
                "billing_reason",
                "collection_method",
                "customer_id",
                "customer_external_id",
                "customer_name",
                "customer_tax_ids",
                "tax_exempt",
                "currency",
                "period_start",
                "period_end",
                "finalized_at",
                "due_date",
                "paid_at",
                "subtotal",
                "discount",
                "tax",
                "total",
                "amount_paid",
                "amount_credited",
                "amount_refunded",
                "amount_due",
                "tax_breakdown",
                "pdf_sha256",
            ],
            Kind::InvoiceLines => &[
                "tenant_id",
                "invoice_id",
                "invoice_number",
                "finalized_at",
                "customer_id",
                "customer_external_id",
                "customer_name",
                "line_id",
                "type",
                "description",
                "quantity",
                "unit_amount",
                "amount",
                "net_amount",
                "discount_amount",
                "currency",
                "period_start",
                "period_end",
                "tax_rates",
            ],
            Kind::Payments => &[
                "tenant_id",
                "payment_id",
                "invoice_id",
                "invoice_number",
                "customer_id",
                "customer_external_id",
                "customer_name",
                "attempt_number",
                "status",
                "amount",
                "amount_refunded",
                "currency",
                "provider",
                "provider_ref",
                "decline_code",
                "created_at",
                "completed_at",
            ],
            Kind::CreditNotes => &[
                "tenant_id",
                "credit_note_id",
                "number",
                "invoice_id",
                "invoice_number",
                "customer_id",
                "customer_external_id",
                "customer_name",
                "customer_tax_ids",
                "reason",
                "currency",
                "amount",
                "pre_payment_amount",
                "refund_amount",
                "credit_amount",
                "out_of_band_amount",
                "refund_status",
                "tax_breakdown",
                "created_at",
            ],
            Kind::Journal => &[
                "tenant_id",
                "entry_id",
                "date",
                "account",
                "debit",
                "credit",
                "currency",
                "source_type",
                "source_id",
                "detail",
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Format::Csv),
            "json" | "jsonl" => Some(Format::JsonLines),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::JsonLines => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
        }
    }
}

/// The days `from` to `to` (both included) in a time zone, as UTC instants `[start, end)`.
pub fn window(
    from: NaiveDate,
    to: NaiveDate,
    tz: chrono_tz::Tz,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    if to < from {
        return Err(format!("`to` ({to}) is before `from` ({from})"));
    }
    // A day starts at its first local instant: midnight, or where a clock change that
    // skips midnight (America/Santiago, America/Havana) lands.
    let midnight = |d: NaiveDate| {
        let start = d.and_time(chrono::NaiveTime::MIN);
        (0..=24 * 60)
            .find_map(|m| {
                tz.from_local_datetime(&(start + chrono::Duration::minutes(m)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("{d} has no start in {tz}"))
    };
    let end = to
        .succ_opt()
        .ok_or_else(|| format!("`to` ({to}) is out of range"))?;
    Ok((midnight(from)?, midnight(end)?))
}

/// A cell: text is made spreadsheet-safe in CSV, numbers and times are written as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Number(String),
    Empty,
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn opt_text(s: Option<&str>) -> Cell {
    s.map_or(Cell::Empty, text)
}

/// An amount in major units as a plain decimal (`12.34`, `1235` for JPY, `-0.50`).
pub fn major(minor: i64, currency: &Currency) -> String {
    Decimal::from_i128_with_scale(i128::from(minor), currency.exponent()).to_string()
}

fn money(minor: i64, currency: &Currency) -> Cell {
    Cell::Number(major(minor, currency))
}

fn time(t: DateTime<Utc>) -> Cell {
    Cell::Number(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn opt_time(t: Option<DateTime<Utc>>) -> Cell {
    t.map_or(Cell::Empty, time)
}

fn tax_ids(c: Option<&Customer>) -> Cell {
    let ids: Vec<String> = c
        .map(|c| {
            c.tax_ids
                .iter()
                .map(|t| format!("{}:{}", t.kind, t.value))
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        Cell::Empty
    } else {
        text(ids.join(";"))
    }
}

/// Tax per rate: `VAT 23%: 41.39 on 179.97; VAT 8%: 14.40 on 179.97`.
fn breakdown(taxes: &[TaxAmount], currency: &Currency) -> Cell {
    if taxes.is_empty() {
        return Cell::Empty;
    }
    text(
        taxes
            .iter()
            .map(|t| {
                format!(
                    "{} {}%: {} on {}",
                    t.display_name,
                    t.percentage.normalize(),
                    major(t.amount, currency),
                    major(t.taxable_amount, currency)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

fn customer_cells(id: &str, c: Option<&Customer>) -> [Cell; 3] {
    [
        text(id),
        opt_text(c.and_then(|c| c.external_id.as_deref())),
        opt_text(c.map(|c| c.name.as_str())),
    ]
}

pub fn invoice_row(tenant: &str, inv: &Invoice, c: Option<&Customer>) -> Vec<Cell> {
    let cur = &inv.currency;
    let [cid, ext, name] = customer_cells(inv.customer.as_str(), c);
    vec![
        text(tenant),
        text(inv.id.as_str()),
        opt_text(inv.number.as_deref()),
        text(inv.status.as_str()),
        text(inv.billing_reason.as_str()),
        text(inv.collection_method.as_str()),
        cid,
        ext,
        name,
        tax_ids(c),
        text(inv.tax_exempt.as_str()),
        text(cur.code()),
        time(inv.period_start),
        time(inv.period_end),
        opt_time(inv.finalized_at),
        opt_time(inv.due_date),
        opt_time(inv.paid_at),
        money(inv.subtotal, cur),
        money(inv.discount, cur),
        money(inv.tax, cur),
        money(inv.total, cur),
        money(inv.amount_paid, cur),
        money(inv.amount_credited, cur),
        money(inv.amount_refunded, cur),
        money(inv.amount_due, cur),
        breakdown(&inv.total_tax_amounts, cur),
        opt_text(inv.document.pdf_sha256.as_deref()),
    ]
}

pub fn line_rows(tenant: &str, inv: &Invoice, c: Option<&Customer>) -> Vec<Vec<Cell>> {
    let cur = &inv.currency;
    inv.lines
        .iter()
        .map(|l| {
            let [cid, ext, name] = customer_cells(inv.customer.as_str(), c);
            vec![
                text(tenant),
                text(inv.id.as_str()),
                opt_text(inv.number.as_deref()),
                opt_time(inv.finalized_at),
                cid,
                ext,
                name,
                text(l.id.as_str()),
                text(l.kind.as_str()),
                text(l.description.as_str()),
                Cell::Number(l.quantity.to_string()),
                l.unit_amount_decimal.map_or(Cell::Empty, |u| {
                    let mut major = u;
                    major.set_scale(u.scale() + cur.exponent()).ok();
                    Cell::Number(major.normalize().to_string())
                }),
                money(l.amount, cur),
                money(l.net_amount, cur),
                money(l.discount_amount, cur),
                text(cur.code()),
                time(l.period_start),
                time(l.period_end),
                text(
                    l.tax_rates
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(";"),
                ),
            ]
        })
        .collect()
}

pub fn payment_row(
    tenant: &str,
    p: &Payment,
    inv: Option<&Invoice>,
    c: Option<&Customer>,
) -> Vec<Cell> {
    let cur = &p.currency;
    let customer = inv.map(|i| i.customer.as_str()).unwrap_or_default();
    let [cid, ext, name] = customer_cells(customer, c);
    vec![
        text(tenant),
        text(p.id.as_str()),
        text(p.invoice.as_str()),
        opt_text(inv.and_then(|i| i.number.as_deref())),
        cid,
        ext,
        name,
        Cell::Number(p.attempt_number.to_string()),
        text(p.status.as_str()),
        money(p.amount, cur),
        money(p.amount_refunded, cur),
        text(cur.code()),
        text(p.provider.as_str()),
        opt_text(p.provider_ref.as_deref()),
        opt_text(p.decline_code.as_deref()),
        time(p.created),
        opt_time(p.completed_at),
    ]
}

pub fn credit_note_row(
    tenant: &str,
    n: &CreditNote,
    inv: Option<&Invoice>,
    c: Option<&Customer>,
) -> Vec<Cell> {
    let cur = &n.currency;
    let [cid, ext, name] = customer_cells(n.customer.as_str(), c);
    vec![
        text(tenant),
        text(n.id.as_str()),
        text(n.number.as_str()),
        text(n.invoice.as_str()),
        opt_text(inv.and_then(|i| i.number.as_deref())),
        cid,
        ext,
        name,
        tax_ids(c),
        text(n.reason.as_str()),
        text(cur.code()),
        money(n.amount, cur),
        money(n.pre_payment_amount, cur),
        money(n.refund_amount, cur),
        money(n.credit_amount, cur),
        money(n.out_of_band_amount, cur),
        text(n.refund_status.as_str()),
        breakdown(&n.tax_amounts, cur),
        time(n.created),
    ]
}

/// One row per posting of a journal entry; `date` is the entry's day in `tz`.
pub fn journal_rows(tenant: &str, e: &Entry, tz: chrono_tz::Tz) -> Vec<Vec<Cell>> {
    let cur = Currency::parse(&e.currency).ok();
    let amount = |v: i64| match &cur {
        Some(c) => money(v, c),
        None => Cell::Number(v.to_string()),
    };
    let day = e.date.with_timezone(&tz).date_naive().to_string();
    e.postings
        .iter()
        .map(|p| {
            vec![
                text(tenant),
                text(e.id.as_str()),
                Cell::Number(day.clone()),
                text(p.account.as_str()),
                amount(p.debit()),
                amount(p.credit()),
                text(e.currency.as_str()),
                text(e.source.as_str()),
                text(e.source_id.as_str()),
                text(p.detail.as_str()),
            ]
        })
        .collect()
}

/// OWASP CSV injection: a text cell a spreadsheet would read as a formula (`=`, `+`, `-`,
/// `@`, tab, carriage return first) is prefixed with `'`.
pub fn neutralise(s: &str) -> std::borrow::Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

/// Writes rows in one format into a byte buffer the caller drains between batches.
pub struct Encoder {
    format: Format,
    columns: &'static [&'static str],
    csv: csv::Writer<Vec<u8>>,
    json: Vec<u8>,
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

impl Encoder {
    /// A new encoder; for CSV the header row is written at once.
    pub fn new(kind: Kind, format: Format) -> Result<Self, csv::Error> {
        let mut csv = csv_writer();
        if format == Format::Csv {
            csv.write_record(kind.columns())?;
        }
        Ok(Self {
            format,
            columns: kind.columns(),
            csv,
            json: Vec::new(),
        })
    }

    pub fn row(&mut self, cells: &[Cell]) -> Result<(), csv::Error> {
        match self.format {
            Format::Csv => self.csv.write_record(cells.iter().map(|c| match c {
                Cell::Text(s) => neutralise(s).into_owned(),
                Cell::Number(s) => s.clone(),
                Cell::Empty => String::new(),
            })),
            Format::JsonLines => {
                let obj: serde_json::Map<String, serde_json::Value> = self
                    .columns
                    .iter()
                    .zip(cells)
                    .map(|(k, c)| {
                        let v = match c {
                            Cell::Text(s) | Cell::Number(s) => serde_json::Value::String(s.clone()),
                            Cell::Empty => serde_json::Value::Null,
                        };
                        ((*k).to_owned(), v)
                    })
                    .collect();
                serde_json::to_writer(&mut self.json, &obj)
                    .map_err(|e| csv::Error::from(std::io::Error::other(e)))?;
                self.json.push(b'\n');
                Ok(())
            }
        }
    }

    /// The bytes written since the last call.
    pub fn take(&mut self) -> Result<Vec<u8>, csv::Error> {
        match self.format {
            Format::Csv => std::mem::replace(&mut self.csv, csv_writer())
                .into_inner()
                .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string()))),
            Format::JsonLines => Ok(std::mem::take(&mut self.json)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Fuzz: any text in any cell reads back from the CSV as one record with every field
        /// in place, the text intact (a formula start prefixed with `'`), never a formula.
        #[test]
        fn any_text_round_trips_through_the_csv(cells in prop::collection::vec(any::<String>(), 1..6)) {
            let columns = Kind::Payments.columns().len();
            let mut e = Encoder::new(Kind::Payments, Format::Csv).unwrap();
            let mut row: Vec<Cell> = cells.iter().cloned().map(Cell::Text).collect();
            row.resize(columns, Cell::Empty);
            e.row(&row).unwrap();
            let out = e.take().unwrap();
            let mut reader = csv::ReaderBuilder::new().from_reader(out.as_slice());
            let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            prop_assert_eq!(records.len(), 1);
            prop_assert_eq!(records[0].len(), columns);
            for (i, text) in cells.iter().enumerate() {
                let field = &records[0][i];
                let expected = neutralise(text).into_owned();
                prop_assert_eq!(field, expected.as_str());
                prop_assert!(!field.starts_with(['=', '+', '-', '@', '\t', '\r']));
            }
        }
    }

    #[test]
    fn formulas_are_neutralised_and_numbers_kept() {
        let mut e = Encoder::new(Kind::Payments, Format::Csv).unwrap();
        let mut cells = vec![
            text("=HYPERLINK(\"http://evil\")"),
            text("+1"),
            text("-2"),
            text("@SUM(A1)"),
            text("\tx"),
            text("\rx"),
            text("Zażółć, \"quoted\""),
            Cell::Number("-12.50".into()),
            Cell::Empty,
        ];
        cells.resize(Kind::Payments.columns().len(), Cell::Empty);
        e.row(&cells).unwrap();
        let out = String::from_utf8(e.take().unwrap()).unwrap();
        let last = out.lines().nth(1).unwrap();
        assert_eq!(
            last,
            "\"'=HYPERLINK(\"\"http://evil\"\")\",'+1,'-2,'@SUM(A1),'\tx,\"'\rx\",\"Zażółć, \"\"quoted\"\"\",-12.50,,,,,,,,,"
        );
        assert!(out.starts_with("tenant_id,payment_id,"));
    }

    #[test]
    fn amounts_are_plain_decimals_in_major_units() {
        assert_eq!(major(123_456, &Currency::parse("EUR").unwrap()), "1234.56");
        assert_eq!(major(-50, &Currency::parse("EUR").unwrap()), "-0.50");
        assert_eq!(major(1235, &Currency::parse("JPY").unwrap()), "1235");
        assert_eq!(
            major(1_234_567, &Currency::parse("KWD").unwrap()),
            "1234.567"
        );
    }

    #[test]
    fn windows_are_local_days() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let (a, b) = window(d("2027-03-01"), d("2027-03-31"), chrono_tz::Europe::Warsaw).unwrap();
        assert_eq!(a.to_rfc3339(), "2027-02-28T23:00:00+00:00");
        // Summer time began on Mar 28: April 1 starts at 22:00 UTC.
        assert_eq!(b.to_rfc3339(), "2027-03-31T22:00:00+00:00");
        assert!(window(d("2027-03-02"), d("2027-03-01"), chrono_tz::UTC).is_err());
        // Chile's clocks go from 00:00 to 01:00 on the first Sunday of September: that day
        // starts at 01:00 local (-03:00).
        let (a, b) = window(
            d("2026-09-06"),
            d("2026-09-06"),
            chrono_tz::America::Santiago,
        )
        .unwrap();
        assert_eq!(a.to_rfc3339(), "2026-09-06T04:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2026-09-07T03:00:00+00:00");
    }
}
