//! Drawing a paginated layout with printpdf's low-level operations (text, rectangles, lines,
//! one image) and DejaVu Sans embedded and subset. The output is a pure function of its
//! input: fixed resource names, fixed dates and a document id derived from the content, so
//! rendering an invoice again yields the same bytes and its SHA-256 proves it unchanged.

use super::layout::{self, Align, Layout, Op, Section, Weight};
use printpdf::{
    Color, FontId, Line, LinePoint, Mm, Op as PdfOp, PaintMode, ParsedFont, PdfDocument, PdfFont,
    PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, RawImage, Rect, Rgb, TextItem, XObject,
    XObjectId, XObjectTransform,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::LazyLock;

const REGULAR_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const BOLD_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

struct Fonts {
    regular: ParsedFont,
    bold: ParsedFont,
}

static FONTS: LazyLock<Result<Fonts, String>> = LazyLock::new(|| {
    let parse = |bytes: &[u8], name: &str| {
        ParsedFont::from_bytes(bytes, 0, &mut Vec::new())
            .ok_or_else(|| format!("the embedded font {name} could not be read"))
    };
    Ok(Fonts {
        regular: parse(REGULAR_TTF, "DejaVuSans.ttf")?,
        bold: parse(BOLD_TTF, "DejaVuSans-Bold.ttf")?,
    })
});

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("{0}")]
    Font(String),
    #[error("the logo could not be decoded: {0}")]
    Logo(String),
    #[error("writing the PDF failed: {0}")]
    Write(String),
}

/// What a document needs besides its layout.
pub struct Meta<'a> {
    pub title: &'a str,
    /// When the document was issued (the PDF's creation date).
    pub issued_at: i64,
    pub logo: Option<&'a [u8]>,
}

fn font(fonts: &Fonts, w: Weight) -> &ParsedFont {
    match w {
        Weight::Regular => &fonts.regular,
        Weight::Bold => &fonts.bold,
    }
}

const MM_PER_PT: f32 = 25.4 / 72.0;

/// The advance width of `text` in mm at `size` pt.
fn width(font: &ParsedFont, size: f32, text: &str) -> f32 {
    let upem = f32::from(font.units_per_em.max(1));
    let units: u32 = text
        .chars()
        .map(|c| {
            let gid = font.lookup_glyph_index(u32::from(c)).unwrap_or(0);
            u32::from(font.get_glyph_width(gid).unwrap_or(0))
        })
        .sum();
    units as f32 / upem * size * MM_PER_PT
}

/// `text` cut to fit `max` mm, ending in "…" when cut.
fn fit(font: &ParsedFont, size: f32, text: &str, max: f32) -> String {
    if max <= 0.0 || width(font, size, text) <= max {
        return text.to_owned();
    }
    let mut out: String = text.to_owned();
    while !out.is_empty() && width(font, size, &format!("{out}…")) > max {
        out.pop();
    }
    format!("{}…", out.trim_end())
}

/// Greedy word wrap at spaces and explicit line breaks.
fn wrap_lines(font: &ParsedFont, size: f32, text: &str, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if !line.is_empty() && width(font, size, &candidate) > max {
                lines.push(std::mem::replace(&mut line, word.to_owned()));
            } else {
                line = candidate;
            }
        }
        lines.push(line);
    }
    lines
}

/// Turns `wrap` operations into one `text` per line and grows their sections to hold them,
/// so pagination sees the real heights.
fn resolve_wraps(fonts: &Fonts, layout: &mut Layout) {
    let sections = layout
        .header
        .iter_mut()
        .chain(layout.footer.iter_mut())
        .chain(layout.flow.iter_mut().flatten());
    for section in sections {
        let mut current = (Weight::Regular, 9.0_f32);
        let mut ops = Vec::with_capacity(section.ops.len());
        for op in section.ops.drain(..) {
            match op {
                Op::Font(w, s) => {
                    current = (w, s);
                    ops.push(op);
                }
                Op::Wrap {
                    x,
                    y,
                    width: w,
                    leading,
                    text,
                } => {
                    let plain = layout::unescape(&text, 0, 0);
                    let lines = wrap_lines(font(fonts, current.0), current.1, &plain, w);
                    let bottom = y + leading * (lines.len().saturating_sub(1)) as f32 + 2.0;
                    section.height = section.height.max(bottom);
                    for (i, line) in lines.into_iter().enumerate() {
                        let mut escaped = String::new();
                        let _ = askama::filters::Escaper::write_escaped_str(
                            &layout::Escape,
                            &mut escaped,
                            &line,
                        );
                        ops.push(Op::Text {
                            x,
                            y: y + leading * i as f32,
                            align: Align::Left,
                            max_width: w,
                            text: escaped,
                        });
                    }
                }
                other => ops.push(other),
            }
        }
        section.ops = ops;
    }
}

fn rgb(c: [u8; 3]) -> Color {
    Color::Rgb(Rgb {
        r: f32::from(c[0]) / 255.0,
        g: f32::from(c[1]) / 255.0,
        b: f32::from(c[2]) / 255.0,
        icc_profile: None,
    })
}

struct Ids {
    regular: FontId,
    bold: FontId,
    logo: Option<(XObjectId, f32, f32)>,
}

/// The glyphs each font drew, for subsetting.
#[derive(Default)]
struct Used {
    regular: BTreeSet<u16>,
    bold: BTreeSet<u16>,
}

impl Used {
    fn add(&mut self, fonts: &Fonts, w: Weight, text: &str) {
        let set = match w {
            Weight::Regular => &mut self.regular,
            Weight::Bold => &mut self.bold,
        };
        let f = font(fonts, w);
        set.extend(
            text.chars()
                .filter_map(|c| f.lookup_glyph_index(u32::from(c))),
        );
    }
}

/// Names a subset font the way readers recognise one: `TAG+FontName`.
fn tag_subset(dict: &mut lopdf::Dictionary) {
    for key in [b"BaseFont".as_slice(), b"FontName"] {
        let renamed = match dict.get(key).and_then(lopdf::Object::as_name) {
            Ok(b"RCRREG") => "RCRREG+DejaVuSans",
            Ok(b"RCRBLD") => "RCRBLD+DejaVuSans-Bold",
            _ => continue,
        };
        dict.set(key, lopdf::Object::Name(renamed.as_bytes().to_vec()));
    }
}

/// Replaces each embedded font program by one holding only the glyphs drawn (same glyph
/// ids, so the content streams and widths stay valid): a page embeds tens of kilobytes of
/// font instead of 1.4 MB.
fn subset_fonts(lo: &mut lopdf::Document, used: &Used) {
    for obj in lo.objects.values_mut() {
        if let lopdf::Object::Dictionary(dict) = obj {
            tag_subset(dict);
        }
        let lopdf::Object::Stream(stream) = obj else {
            continue;
        };
        for (program, glyphs) in [(REGULAR_TTF, &used.regular), (BOLD_TTF, &used.bold)] {
            if stream.content.len() != program.len() || stream.content != program {
                continue;
            }
            let ids: Vec<u16> = std::iter::once(0).chain(glyphs.iter().copied()).collect();
            match subsetter::subset(program, 0, subsetter::Profile::pdf(&ids)) {
                Ok(small) => {
                    stream.dict.set("Length1", small.len() as i64);
                    stream.set_content(small);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "font subsetting failed; embedding the whole font")
                }
            }
            break;
        }
    }
}

/// Draws sections onto pages, noting the glyphs it used.
struct Painter<'a> {
    fonts: &'a Fonts,
    ids: &'a Ids,
    used: Used,
    page_h: f32,
}

impl Painter<'_> {
    fn draw(&mut self, out: &mut Vec<PdfOp>, top: f32, section: &Section, page: (usize, usize)) {
        let (fonts, ids, page_h) = (self.fonts, self.ids, self.page_h);
        let used = &mut self.used;
        let mut weight = Weight::Regular;
        let mut size = 9.0_f32;
        let mut colour = [0, 0, 0];
        for op in &section.ops {
            match op {
                Op::Font(w, s) => {
                    weight = *w;
                    size = *s;
                }
                Op::Color(c) => colour = *c,
                Op::Text {
                    x,
                    y,
                    align,
                    max_width,
                    text,
                } => {
                    let f = font(fonts, weight);
                    let shown = layout::unescape(text, page.0, page.1).replace('\n', " ");
                    let shown = fit(f, size, &shown, *max_width);
                    if shown.is_empty() {
                        continue;
                    }
                    used.add(fonts, weight, &shown);
                    let w = width(f, size, &shown);
                    let left = match align {
                        Align::Left => *x,
                        Align::Right => x - w,
                        Align::Center => x - w / 2.0,
                    };
                    let id = match weight {
                        Weight::Regular => ids.regular.clone(),
                        Weight::Bold => ids.bold.clone(),
                    };
                    out.extend([
                        PdfOp::StartTextSection,
                        PdfOp::SetFont {
                            font: PdfFontHandle::External(id),
                            size: Pt(size),
                        },
                        PdfOp::SetFillColor { col: rgb(colour) },
                        PdfOp::SetTextCursor {
                            pos: Point::new(Mm(left), Mm(page_h - top - y)),
                        },
                        PdfOp::ShowText {
                            items: vec![TextItem::Text(shown)],
                        },
                        PdfOp::EndTextSection,
                    ]);
                }
                Op::Rect { x, y, w, h } => {
                    out.push(PdfOp::SetFillColor { col: rgb(colour) });
                    let mut r = Rect::from_xywh(
                        Mm(*x).into(),
                        Mm(page_h - top - y - h).into(),
                        Mm(*w).into(),
                        Mm(*h).into(),
                    );
                    r.mode = Some(PaintMode::Fill);
                    out.push(PdfOp::DrawRectangle { rectangle: r });
                }
                Op::Line {
                    x1,
                    y1,
                    x2,
                    y2,
                    width,
                } => {
                    let point = |x: f32, y: f32| LinePoint {
                        p: Point::new(Mm(x), Mm(page_h - top - y)),
                        bezier: false,
                    };
                    out.extend([
                        PdfOp::SetOutlineColor { col: rgb(colour) },
                        PdfOp::SetOutlineThickness { pt: Pt(*width) },
                        PdfOp::DrawLine {
                            line: Line {
                                points: vec![point(*x1, *y1), point(*x2, *y2)],
                                is_closed: false,
                            },
                        },
                    ]);
                }
                Op::Logo { x, y, max_w, max_h } => {
                    let Some((id, px_w, px_h)) = &ids.logo else {
                        continue;
                    };
                    let scale = (max_w / px_w).min(max_h / px_h);
                    let (w, h) = (px_w * scale, px_h * scale);
                    // printpdf sizes an image by its pixels at `dpi`: choose the dpi that gives w.
                    let dpi = px_w * 25.4 / w.max(0.01);
                    out.push(PdfOp::UseXobject {
                        id: id.clone(),
                        transform: XObjectTransform {
                            translate_x: Some(Mm(*x).into()),
                            translate_y: Some(Mm(page_h - top - y - h).into()),
                            dpi: Some(dpi),
                            ..Default::default()
                        },
                    });
                }
                Op::Wrap { .. } => {}
            }
        }
    }
}

/// Deflates every stream at a fast level (lopdf's own `compress` uses the slowest, which
/// was half of a page's rendering time for a few percent of its size).
fn compress(lo: &mut lopdf::Document) {
    use flate2::{Compression, write::ZlibEncoder};
    use std::io::Write;
    for obj in lo.objects.values_mut() {
        let lopdf::Object::Stream(stream) = obj else {
            continue;
        };
        if !stream.allows_compression || stream.dict.get(b"Filter").is_ok() {
            continue;
        }
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::new(COMPRESSION_LEVEL));
        if encoder.write_all(&stream.content).is_err() {
            continue;
        }
        if let Ok(deflated) = encoder.finish()
            && deflated.len() < stream.content.len()
        {
            stream.dict.set("Filter", "FlateDecode");
            stream.set_content(deflated);
        }
    }
}

const COMPRESSION_LEVEL: u32 = 3;

/// Renders a parsed layout to PDF bytes.
pub fn render(mut layout: Layout, meta: &Meta<'_>) -> Result<Vec<u8>, PdfError> {
    let fonts = FONTS.as_ref().map_err(|e| PdfError::Font(e.clone()))?;
    resolve_wraps(fonts, &mut layout);
    let mut doc = PdfDocument::new(meta.title);
    // Fixed resource names (six capitals, also the subset tag): the bytes depend only on
    // the content.
    let ids = Ids {
        regular: FontId("RCRREG".into()),
        bold: FontId("RCRBLD".into()),
        logo: match meta.logo {
            Some(bytes) => {
                let image =
                    RawImage::decode_from_bytes(bytes, &mut Vec::new()).map_err(PdfError::Logo)?;
                let id = XObjectId("RCRLOGO".into());
                let size = (image.width as f32, image.height as f32);
                doc.resources
                    .xobjects
                    .map
                    .insert(id.clone(), XObject::Image(image));
                Some((id, size.0.max(1.0), size.1.max(1.0)))
            }
            None => None,
        },
    };
    doc.resources
        .fonts
        .map
        .insert(ids.regular.clone(), PdfFont::new(fonts.regular.clone()));
    doc.resources
        .fonts
        .map
        .insert(ids.bold.clone(), PdfFont::new(fonts.bold.clone()));
    let info = &mut doc.metadata.info;
    if let Ok(issued) = printpdf::DateTime::from_unix_timestamp(meta.issued_at) {
        info.creation_date = issued;
        info.modification_date = issued;
        info.metadata_date = issued;
    }
    info.producer = "recur".into();
    info.creator = "recur".into();

    let page = layout.page;
    let placed = layout::paginate(&layout);
    let count = placed.len();
    let mut painter = Painter {
        fonts,
        ids: &ids,
        used: Used::default(),
        page_h: page.height,
    };
    let pages = placed
        .iter()
        .enumerate()
        .map(|(n, sections)| {
            let mut ops = Vec::new();
            for p in sections {
                painter.draw(&mut ops, p.y, p.section, (n + 1, count));
            }
            PdfPage::new(Mm(page.width), Mm(page.height), ops)
        })
        .collect();
    doc.with_pages(pages);
    let mut lo = doc.to_lopdf_document(&PdfSaveOptions::default(), &mut Vec::new());
    // The trailer's document id: a hash of the document's own text instead of a random one.
    let mut hasher = Sha256::new();
    hasher.update(meta.title.as_bytes());
    hasher.update(meta.issued_at.to_be_bytes());
    for sections in &placed {
        for p in sections {
            hasher.update(format!("{:?}", p.section.ops).as_bytes());
        }
    }
    let id = hasher.finalize()[..16].to_vec();
    lo.trailer.set(
        "ID",
        lopdf::Object::Array(vec![
            lopdf::Object::String(id.clone(), lopdf::StringFormat::Hexadecimal),
            lopdf::Object::String(id, lopdf::StringFormat::Hexadecimal),
        ]),
    );
    subset_fonts(&mut lo, &painter.used);
    compress(&mut lo);
    let mut bytes = Vec::new();
    lo.save_to(&mut bytes)
        .map_err(|e| PdfError::Write(e.to_string()))?;
    Ok(bytes)
}
