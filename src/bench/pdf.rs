//! `recur bench pdf`: renders N one-page invoices the way finalization does (template,
//! layout, DejaVu Sans embedded and subset) and, in the same run, a baseline of the same
//! page drawn with the fewest printpdf operations (every text in one text section in the
//! built-in Helvetica: no font to embed, no layout). Prints PDFs per second on one core, on
//! every core, and the ratio. Figures, never assertions.

use crate::documents::layout::{self, Op};
use crate::documents::{self, Seller, sample};
use crate::domain::customer::TaxExempt;
use askama::Template;
use printpdf::{
    BuiltinFont, Mm, Op as PdfOp, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt,
    TextItem,
};
use std::time::Instant;

/// Lines on the benchmark invoice: a typical one-page invoice.
const LINES: usize = 8;

/// The benchmark's invoice, its customer and its seller.
fn sample_invoice() -> (
    crate::domain::seller::InvoiceSettings,
    crate::domain::invoice::Invoice,
    crate::domain::customer::Customer,
) {
    (
        sample::seller(),
        sample::invoice(LINES, "EUR", TaxExempt::None),
        sample::customer("pl", TaxExempt::None),
    )
}

/// The texts of the invoice page and where they go, for the baseline.
fn page_texts() -> anyhow::Result<Vec<(f32, f32, String)>> {
    let (settings, inv, customer) = sample_invoice();
    let seller = Seller {
        settings: &settings,
        fallback_name: "",
    };
    let lang = documents::lang_for(&customer, &settings);
    let source = documents::invoice_page(lang, &inv, &customer, &seller, false).render()?;
    let parsed = layout::parse(&source)?;
    let mut out = Vec::new();
    for page in layout::paginate(&parsed) {
        for p in page {
            for op in &p.section.ops {
                if let Op::Text { x, y, text, .. } = op {
                    // Helvetica is WinAnsi only: the baseline draws ASCII.
                    let ascii: String = layout::unescape(text, 1, 1)
                        .chars()
                        .map(|c| if c.is_ascii() { c } else { '?' })
                        .collect();
                    out.push((*x, 297.0 - p.y - y, ascii));
                }
            }
        }
    }
    Ok(out)
}

fn baseline(texts: &[(f32, f32, String)]) -> Vec<u8> {
    let mut ops = vec![
        PdfOp::StartTextSection,
        PdfOp::SetFont {
            font: PdfFontHandle::Builtin(BuiltinFont::Helvetica),
            size: Pt(8.0),
        },
    ];
    for (x, y, text) in texts {
        ops.push(PdfOp::SetTextCursor {
            pos: Point::new(Mm(*x), Mm(*y)),
        });
        ops.push(PdfOp::ShowText {
            items: vec![TextItem::Text(text.clone())],
        });
        ops.push(PdfOp::SetTextCursor {
            pos: Point::new(Mm(-*x), Mm(-*y)),
        });
    }
    ops.push(PdfOp::EndTextSection);
    let mut doc = PdfDocument::new("baseline");
    doc.with_pages(vec![PdfPage::new(Mm(210.0), Mm(297.0), ops)]);
    doc.save(&PdfSaveOptions::default(), &mut Vec::new())
}

fn ours() -> anyhow::Result<Vec<u8>> {
    let (settings, inv, customer) = sample_invoice();
    let seller = Seller {
        settings: &settings,
        fallback_name: "",
    };
    Ok(documents::invoice_pdf(&inv, &customer, &seller, false)?)
}

/// PDFs per second rendering `n` documents with `render` on `threads` threads.
fn rate(n: usize, threads: usize, render: impl Fn() -> usize + Sync) -> (f64, usize) {
    let started = Instant::now();
    let bytes = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let render = &render;
                s.spawn(move || {
                    let mine = n / threads + usize::from(t < n % threads);
                    (0..mine).map(|_| render()).last().unwrap_or(0)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .max()
            .unwrap_or(0)
    });
    (n as f64 / started.elapsed().as_secs_f64(), bytes)
}

pub fn run(invoices: usize) -> anyhow::Result<()> {
    let n = invoices.max(1);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let texts = page_texts()?;
    ours()?;
    println!(
        "recur bench pdf: {n} one-page invoices ({LINES} lines, Polish, two VAT rates), {cores} cores"
    );
    println!(
        "{:<52} {:>12} {:>9} {:>10}",
        "route", "PDFs/s/core", "ms/PDF", "KB/PDF"
    );
    let (our_rate, our_size) = rate(n, 1, || ours().map_or(0, |b| b.len()));
    let (base_rate, base_size) = rate(n, 1, || baseline(&texts).len());
    for (name, r, size) in [
        (
            "recur: template + layout + DejaVu Sans subset",
            our_rate,
            our_size,
        ),
        (
            "baseline: same texts, one text section, Helvetica",
            base_rate,
            base_size,
        ),
    ] {
        println!(
            "{name:<52} {r:>12.0} {:>9.2} {:>10.1}",
            1000.0 / r,
            size as f64 / 1024.0
        );
    }
    println!("ratio recur / baseline: {:.2}", our_rate / base_rate);
    let (all, _) = rate(n, cores, || ours().map_or(0, |b| b.len()));
    println!(
        "recur on {cores} cores: {all:.0} PDFs/s ({:.0} per core)",
        all / cores as f64
    );
    Ok(())
}
