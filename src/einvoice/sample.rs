//! Random finalized invoices and credit notes for the e-invoice validation run and the model's
//! property tests. Every figure comes from the billing engine's own arithmetic
//! (`invoice_math::compute_totals`, `credit_note::split`), so what is validated is what recur
//! bills: currencies with 0 and 2 decimals, several VAT rates in one invoice, inclusive
//! prices, discounts, proration credits, reverse charge, exemption, long invoices, and names
//! full of characters XML must escape.

use crate::domain::contact::{Address, Country, Email, TaxId};
use crate::domain::credit_note::{self, Credit, CreditNote, CreditNoteLine, Reason, Settle};
use crate::domain::currency::Currency;
use crate::domain::customer::{Customer, TaxExempt};
use crate::domain::ids::{CreditNoteId, CustomerId, InvoiceId, InvoiceLineId, TaxRateId};
use crate::domain::invoice::{
    BillingReason, Invoice, InvoiceLine, InvoiceStatus, LineKind, TaxAmount,
};
use crate::domain::invoice_math::{
    Discount, LineInput, TaxRateInput, TaxTreatment, compute_totals,
};
use crate::domain::seller::{BankAccount, Iban, InvoiceSettings};
use crate::domain::subscription::CollectionMethod;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// One generated case: the seller, the customer, a finalized invoice and the credit notes
/// issued on it (none, one or two).
pub struct Case {
    pub seller: InvoiceSettings,
    pub customer: Customer,
    pub invoice: Invoice,
    pub credit_notes: Vec<CreditNote>,
}

const CURRENCIES: &[&str] = &[
    "EUR", "EUR", "EUR", "PLN", "USD", "GBP", "CHF", "JPY", "HUF",
];
const RATES: &[&str] = &["23", "19", "8", "7", "5", "21", "20", "7.5", "5.5", "0"];
const POLISH_RATES: &[&str] = &["23", "8", "5", "0"];
const COUNTRIES: &[(&str, &str, &str)] = &[
    ("DE", "DE129273398", "DE89370400440532013000"),
    ("PL", "PL5260001246", "PL61109010140000071219812874"),
    ("FR", "FR40303265045", "FR1420041010050500013M02606"),
    ("NL", "NL004495445B01", "NL91ABNA0417164300"),
    ("AT", "ATU13585627", "AT611904300234573201"),
    ("BE", "BE0411905847", "BE68539007547034"),
    ("GR", "094014201", "GR1601101250000000012300695"),
    ("US", "12-3456789", "GB29NWBK60161331926819"),
];
const NAMES: &[&str] = &[
    "Müller & Søn GmbH",
    "Zażółć <gęślą> jaźń sp. z o.o.",
    "O'Brien \"Cloud\" Ltd",
    "Ελληνική Εταιρεία Α.Ε.",
    "Acme Inc.",
];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn address(rng: &mut StdRng, country: &str) -> Address {
    Address {
        line1: Some(format!(
            "{} Street & Co {}",
            pick(rng, NAMES),
            rng.random_range(1..200)
        )),
        line2: rng
            .random_bool(0.3)
            .then(|| "Building <B>, 3rd floor".to_owned()),
        city: Some("Łódź".to_owned()),
        postal_code: rng
            .random_bool(0.9)
            .then(|| format!("{:05}", rng.random_range(0..99_999))),
        state: None,
        country: Country::parse(country).ok(),
    }
}

fn seller(rng: &mut StdRng) -> InvoiceSettings {
    // Polish sellers a third of the time, for KSeF.
    let (country, vat, iban) = if rng.random_bool(0.35) {
        COUNTRIES[1]
    } else {
        *pick(rng, &COUNTRIES[..6])
    };
    let mut tax_ids: Vec<TaxId> = TaxId::parse("eu_vat", vat).into_iter().collect();
    if rng.random_bool(0.3) {
        tax_ids.extend(TaxId::parse("de_stn", "143/815/08154"));
    }
    InvoiceSettings {
        legal_name: Some(pick(rng, NAMES).to_string()),
        address: Some(address(rng, country)),
        tax_ids,
        email: Email::parse("billing@seller.example").ok(),
        bank: rng.random_bool(0.8).then(|| BankAccount {
            iban: Iban::parse(iban).ok(),
            bic: rng.random_bool(0.5).then(|| "DEUTDEFF".to_owned()),
            account_number: None,
        }),
        payment_terms: rng
            .random_bool(0.7)
            .then(|| "Payment within 14 days <net>.".to_owned()),
        ..InvoiceSettings::default()
    }
}

fn customer(rng: &mut StdRng, exempt: TaxExempt) -> Customer {
    let (country, vat, _) = *pick(rng, COUNTRIES);
    let t = at(2026, 1, 1);
    let with_vat = exempt == TaxExempt::Reverse || rng.random_bool(0.5);
    Customer {
        id: CustomerId::generate(),
        object: "customer",
        external_id: rng
            .random_bool(0.5)
            .then(|| format!("crm-{}", rng.random_range(1..9999))),
        name: pick(rng, NAMES).to_string(),
        email: Email::parse("ap@buyer.example").ok(),
        currency: None,
        locale: None,
        address: Some(address(rng, country)),
        tax_ids: if with_vat {
            TaxId::parse("eu_vat", vat).into_iter().collect()
        } else {
            Vec::new()
        },
        tax_exempt: exempt,
        payment_method: None,
        balance: 0,
        created: t,
        updated: t,
        erased_at: None,
    }
}

struct Rate {
    id: TaxRateId,
    percentage: Decimal,
    inclusive: bool,
}

fn rates(rng: &mut StdRng, polish: bool) -> Vec<Rate> {
    let mut out: Vec<Rate> = Vec::new();
    for _ in 0..rng.random_range(1..=3) {
        let choices = if polish { POLISH_RATES } else { RATES };
        let percentage: Decimal = pick(rng, choices).parse().unwrap_or_default();
        if out.iter().all(|r| r.percentage != percentage) {
            out.push(Rate {
                id: TaxRateId::generate(),
                percentage,
                inclusive: rng.random_bool(0.25),
            });
        }
    }
    out
}

/// A random priced line: (kind, quantity, unit amount in minor units, amount).
fn priced_line(rng: &mut StdRng, unit: i64) -> (LineKind, u64, Decimal, i64) {
    match rng.random_range(0..10) {
        0..=4 => {
            let qty = rng.random_range(1..=25_u64);
            let price = rng.random_range(1..=50_000) * unit / 100;
            (
                LineKind::Subscription,
                qty,
                Decimal::from(price),
                price * qty as i64,
            )
        }
        5..=7 => {
            let qty = rng.random_range(0..=2_000_000_u64);
            // A fraction of a minor unit per call, rounded once for the line.
            let per_call = Decimal::new(rng.random_range(1..=400), 3) * Decimal::from(unit)
                / Decimal::from(100);
            let amount = (per_call * Decimal::from(qty))
                .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            let amount = i64::try_from(amount.mantissa()).unwrap_or(0);
            (LineKind::Usage, qty, per_call, amount)
        }
        _ => {
            let amount = -rng.random_range(1..=20_000) * unit / 100;
            (LineKind::Proration, 1, Decimal::from(amount), amount)
        }
    }
}

fn invoice(
    rng: &mut StdRng,
    exempt: TaxExempt,
    customer: &Customer,
    seller: &InvoiceSettings,
) -> Option<Invoice> {
    let polish = seller
        .address
        .as_ref()
        .and_then(|a| a.country)
        .is_some_and(|c| c.as_str() == "PL");
    let code = if polish && rng.random_bool(0.7) {
        "PLN"
    } else {
        pick::<&str>(rng, CURRENCIES)
    };
    let currency = Currency::parse(code).ok()?;
    let unit = 10_i64.pow(currency.exponent());
    let rates = rates(rng, polish);
    let start = at(2026, rng.random_range(1..=12), rng.random_range(1..=28));
    let end = start + Duration::days(rng.random_range(1..=31));
    let count = if rng.random_bool(0.1) {
        rng.random_range(40..=120)
    } else {
        rng.random_range(1..=8)
    };
    let mut lines = Vec::with_capacity(count);
    let mut inputs = Vec::with_capacity(count);
    for i in 0..count {
        let (kind, quantity, unit_amount, amount) = priced_line(rng, unit);
        // Some lines untaxed, the others under one of the invoice's rates.
        let rate = (!rng.random_bool(0.1)).then(|| rng.random_range(0..rates.len()));
        let inclusive = rate.is_some_and(|r| rates[r].inclusive);
        let period_start = if kind == LineKind::Proration {
            start + Duration::hours(rng.random_range(1..=500))
        } else {
            start
        };
        inputs.push(LineInput {
            amount,
            tax_rates: rate.into_iter().collect(),
            discountable: !inclusive || rng.random_bool(0.5),
        });
        lines.push(InvoiceLine {
            id: InvoiceLineId::generate(),
            kind,
            description: format!(
                "{} — plan <{}> & usage ({})",
                pick(rng, NAMES),
                kind.as_str(),
                i + 1
            ),
            price: None,
            subscription_item: None,
            quantity,
            unit_amount_decimal: Some(unit_amount),
            amount,
            net_amount: amount,
            discount_amount: 0,
            period_start: period_start.min(end),
            period_end: end,
            proration: kind == LineKind::Proration,
            tax_rates: rate.map(|r| rates[r].id.clone()).into_iter().collect(),
        });
    }
    let discount = match rng.random_range(0..4) {
        0 => Discount::Percent(*pick(
            rng,
            &[Decimal::from(10), Decimal::new(333, 1), Decimal::from(100)],
        )),
        1 => Discount::Amount(rng.random_range(1..=100_000) * unit / 100),
        _ => Discount::None,
    };
    let treatment = match exempt {
        TaxExempt::None => TaxTreatment::Taxable,
        TaxExempt::Exempt => TaxTreatment::Exempt,
        TaxExempt::Reverse => TaxTreatment::ReverseCharge,
    };
    let rate_inputs: Vec<TaxRateInput> = rates
        .iter()
        .map(|r| TaxRateInput {
            percentage: r.percentage,
            inclusive: r.inclusive,
        })
        .collect();
    let totals = compute_totals(&inputs, &rate_inputs, &discount, treatment).ok()?;
    for (l, t) in lines.iter_mut().zip(&totals.lines) {
        l.net_amount = t.net_amount;
        l.discount_amount = t.discount_amount;
    }
    let taxes = totals
        .taxes
        .iter()
        .map(|t| TaxAmount {
            tax_rate: rates[t.rate_index].id.clone(),
            display_name: "VAT".into(),
            percentage: rates[t.rate_index].percentage,
            inclusive: t.inclusive,
            taxable_amount: t.taxable_amount,
            amount: t.amount,
        })
        .collect();
    let collection_method = if rng.random_bool(0.5) {
        CollectionMethod::SendInvoice
    } else {
        CollectionMethod::ChargeAutomatically
    };
    // A customer credit that pays part of the invoice, sometimes.
    let credit = if rng.random_bool(0.2) {
        rng.random_range(1..=1_000) * unit / 100
    } else {
        0
    };
    let used = credit.min(totals.total.max(0));
    let owed = totals.total.max(0) - used;
    Some(Invoice {
        id: InvoiceId::generate(),
        object: "invoice",
        number: Some(format!("INV-2026-{:06}", rng.random_range(1..999_999))),
        customer: customer.id.clone(),
        subscription: None,
        status: if owed == 0 {
            InvoiceStatus::Paid
        } else {
            InvoiceStatus::Open
        },
        billing_reason: BillingReason::SubscriptionCycle,
        collection_method,
        currency,
        period_start: start,
        period_end: end,
        lines,
        subtotal: totals.subtotal,
        discount: totals.discount,
        tax: totals.tax,
        total: totals.total,
        total_tax_amounts: taxes,
        tax_exempt: exempt,
        amount_paid: 0,
        amount_credited: 0,
        amount_refunded: 0,
        amount_due: owed,
        starting_balance: -credit,
        ending_balance: used - credit,
        attempt_count: 0,
        next_payment_attempt: None,
        due_date: (collection_method == CollectionMethod::SendInvoice)
            .then(|| end + Duration::days(14)),
        created: end,
        finalized_at: Some(end),
        paid_at: None,
        voided_at: None,
        marked_uncollectible_at: None,
        first_failed_at: None,
        awaiting_payment_method: false,
        document: Default::default(),
        hosted_invoice_url: None,
    })
}

/// Credit notes the engine would accept on `inv`: by amount or by lines, settled out of band.
fn credit_notes(rng: &mut StdRng, inv: &Invoice) -> Vec<CreditNote> {
    let mut notes = Vec::new();
    let mut credited: HashMap<InvoiceLineId, i64> = HashMap::new();
    let mut inv = inv.clone();
    for n in 1..=rng.random_range(0..=2) {
        let left = if inv.status == InvoiceStatus::Open {
            inv.amount_due
        } else {
            inv.total - inv.amount_credited
        };
        if left <= 0 {
            break;
        }
        let credit = if rng.random_bool(0.5) {
            Credit::Amount(rng.random_range(1..=left))
        } else {
            let mut lines = Vec::new();
            for l in &inv.lines {
                let gross =
                    credit_note::line_gross(&inv, l) - credited.get(&l.id).copied().unwrap_or(0);
                if gross > 0 && rng.random_bool(0.5) {
                    lines.push(CreditNoteLine {
                        invoice_line: l.id.clone(),
                        amount: rng.random_range(1..=gross),
                    });
                }
            }
            Credit::Lines(lines)
        };
        let Ok(split) = credit_note::split(&inv, credit, Settle::OutOfBand, &credited, 0) else {
            continue;
        };
        for l in &split.lines {
            *credited.entry(l.invoice_line.clone()).or_default() += l.amount;
        }
        inv.amount_credited += split.amount;
        inv.amount_due -= split.pre_payment;
        notes.push(CreditNote {
            id: CreditNoteId::generate(),
            object: "credit_note",
            number: format!("{}-CN-{n:02}", inv.number.as_deref().unwrap_or_default()),
            invoice: inv.id.clone(),
            customer: inv.customer.clone(),
            currency: inv.currency,
            amount: split.amount,
            pre_payment_amount: split.pre_payment,
            refund_amount: split.refund,
            out_of_band_amount: split.out_of_band,
            credit_amount: split.to_balance,
            reason: *pick(
                rng,
                &[
                    Reason::OrderChange,
                    Reason::Duplicate,
                    Reason::ProductUnsatisfactory,
                ],
            ),
            memo: rng
                .random_bool(0.5)
                .then(|| "Goodwill <credit> & apology".to_owned()),
            lines: split.lines,
            tax_amounts: split.tax_amounts,
            payment: None,
            refund_status: credit_note::RefundStatus::None,
            refund_ref: None,
            refund_failure: None,
            created: inv.finalized_at.unwrap_or_default() + Duration::days(n.into()),
            document: Default::default(),
        });
    }
    notes
}

/// The case for `seed`: the same seed gives the same case.
pub fn case(seed: u64) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let exempt = match rng.random_range(0..10) {
            0 | 1 => TaxExempt::Reverse,
            2 => TaxExempt::Exempt,
            _ => TaxExempt::None,
        };
        let customer = customer(&mut rng, exempt);
        let seller = seller(&mut rng);
        if let Some(invoice) = invoice(&mut rng, exempt, &customer, &seller) {
            let credit_notes = credit_notes(&mut rng, &invoice);
            return Case {
                seller,
                customer,
                invoice,
                credit_notes,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    //! The model's arithmetic (EN 16931 BR-CO-10…17, BR-S-08) over random invoices.
    use super::*;
    use crate::domain::en16931::{self, Category, Document, ModelError, SellerInput};
    use proptest::prelude::*;

    fn seller_of(case: &Case) -> SellerInput<'_> {
        SellerInput {
            settings: &case.seller,
            fallback_name: "Tenant",
        }
    }

    /// BR-CO-10…16 exactly, and each line's quantity × price ÷ base = its net exactly.
    fn totals_add_up(d: &Document) -> Result<(), TestCaseError> {
        let t = d.totals;
        prop_assert_eq!(
            t.lines,
            d.lines.iter().map(|l| l.net).sum::<i64>(),
            "BR-CO-10"
        );
        prop_assert_eq!(
            t.allowances,
            d.groups.iter().map(|g| g.allowance).sum::<i64>(),
            "BR-CO-11"
        );
        prop_assert_eq!(t.tax_exclusive, t.lines - t.allowances, "BR-CO-13");
        prop_assert_eq!(
            t.tax,
            d.groups.iter().map(|g| g.tax).sum::<i64>(),
            "BR-CO-14"
        );
        prop_assert_eq!(t.tax_inclusive, t.tax_exclusive + t.tax, "BR-CO-15");
        prop_assert_eq!(t.payable, t.tax_inclusive - t.prepaid, "BR-CO-16");
        let unit = Decimal::from(10_i64.pow(d.currency.exponent()));
        for l in &d.lines {
            prop_assert!(l.price >= Decimal::ZERO, "BR-27");
            let net = l.quantity * l.price / l.base_quantity.unwrap_or(Decimal::ONE) * unit;
            prop_assert_eq!(net, Decimal::from(l.net), "line {}", l.id);
        }
        for g in &d.groups {
            let nets: i64 = d
                .lines
                .iter()
                .filter(|l| (l.category, l.percent) == (g.category, g.percent))
                .map(|l| l.net)
                .sum();
            prop_assert_eq!(
                g.taxable,
                nets - g.allowance,
                "BR-S-08 for {:?}",
                g.category
            );
            if g.category != Category::Standard {
                prop_assert_eq!(g.tax, 0);
            }
        }
        Ok(())
    }

    /// `round(taxable × percent / 100)`, half away from zero, in minor units.
    fn product(taxable: i64, percent: Decimal) -> i64 {
        let exact = Decimal::from(taxable) * percent / Decimal::from(100);
        let rounded =
            exact.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        i64::try_from(rounded.mantissa()).unwrap_or(i64::MAX)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn invoices_add_up(seed in any::<u64>()) {
            let case = case(seed);
            let d = en16931::invoice(&case.invoice, &case.customer, &seller_of(&case))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            totals_add_up(&d)?;
            prop_assert_eq!(d.totals.tax_inclusive, case.invoice.total);
            // BR-CO-17: exact where the rate is added on top; a tax carved out of a
            // tax-inclusive price may differ from the product by one minor unit.
            for g in &d.groups {
                let inclusive = case.invoice.total_tax_amounts.iter().any(|t| {
                    t.inclusive && t.percentage.normalize() == g.percent
                });
                let off = (g.tax - product(g.taxable, g.percent)).abs();
                prop_assert!(off <= i64::from(inclusive), "BR-CO-17 {:?} {}: {} vs {}", g.category, g.percent, g.tax, product(g.taxable, g.percent));
            }
        }

        #[test]
        fn credit_notes_add_up(seed in any::<u64>()) {
            let case = case(seed);
            for note in &case.credit_notes {
                let d = en16931::credit_note(note, &case.invoice, &case.customer, &seller_of(&case))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                totals_add_up(&d)?;
                prop_assert_eq!(d.totals.payable, note.amount);
                let mut keys: Vec<_> = d.groups.iter().map(|g| (g.category, g.percent)).collect();
                keys.dedup();
                prop_assert_eq!(keys.len(), d.groups.len(), "one group per category and rate");
                // A note's gross per rate is split at the rate; the split may sit one minor
                // unit from the product (inside BR-CO-17's tolerance), never further.
                for g in &d.groups {
                    let off = (g.tax - product(g.taxable, g.percent)).abs();
                    prop_assert!(off <= 1, "BR-CO-17 {:?} {}: {} vs {}", g.category, g.percent, g.tax, product(g.taxable, g.percent));
                }
            }
        }
    }

    fn refusal(case: &Case) -> ModelError {
        match en16931::invoice(&case.invoice, &case.customer, &seller_of(case)) {
            Ok(_) => ModelError::Inconsistent("produced"),
            Err(e) => e,
        }
    }

    #[test]
    fn what_cannot_be_exact_is_refused() {
        let mut case = case(7);
        case.invoice.currency = Currency::parse("KWD").unwrap();
        assert_eq!(refusal(&case), ModelError::ThreeDecimals("KWD".into()));

        let mut case = super::case(7);
        case.customer.tax_exempt = TaxExempt::Reverse;
        case.invoice.tax_exempt = TaxExempt::Reverse;
        case.customer.tax_ids.clear();
        assert!(matches!(refusal(&case), ModelError::Buyer(_)));

        let mut case = super::case(7);
        case.seller.tax_ids.clear();
        assert!(matches!(refusal(&case), ModelError::Seller(_)));

        let mut case = super::case(7);
        case.invoice.tax_exempt = TaxExempt::None;
        let extra = TaxRateId::generate();
        case.invoice.lines[0].tax_rates = vec![TaxRateId::generate(), extra];
        assert!(matches!(
            refusal(&case),
            ModelError::SeveralRates { line: 1, rates: 2 }
        ));

        let mut case = super::case(7);
        case.invoice.total += 1;
        assert!(matches!(refusal(&case), ModelError::Inconsistent(_)));
    }
}
