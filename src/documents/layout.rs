//! The page description our templates write, and the pagination of it.
//!
//! An askama template (`templates/*.layout`) renders to a short text of sections and drawing
//! operations; this module parses it and flows the sections onto A4 pages, so that the look
//! lives in the template and only the flowing lives here. The format, one item per line:
//!
//! ```text
//! @page WIDTH HEIGHT MARGIN_TOP MARGIN_BOTTOM   page size and margins, in mm (first line)
//! @header H     drawn at the top of every page
//! @footer H     drawn at the bottom of every page
//! @block H      flowed; moves whole to the next page when it does not fit
//! @block H keep  the same, kept on one page with the block that follows (totals)
//! @thead H      flowed like a block, and repeated at the top of every page until @endtable
//! @endtable
//! font regular|bold SIZE_PT
//! color RRGGBB                      fill colour of what follows (text and rectangles)
//! text X Y l|r|c MAXW TEXT...       one line at baseline Y; cut with "…" past MAXW mm (0: no limit)
//! wrap X Y WIDTH LEADING TEXT...    wrapped at spaces and at \n; grows its section
//! rect X Y W H                      filled rectangle
//! line X1 Y1 X2 Y2 WIDTH_PT         stroked with the current colour
//! logo X Y MAXW MAXH                the seller's logo, scaled to fit
//! # a comment
//! ```
//!
//! Coordinates are mm from the section's top-left corner, y downwards. In TEXT, `{page}` and
//! `{pages}` become the page number and count; template values are escaped by [`Escape`]
//! (`\\`, `\{`, `\n`), so customer data can never become an operation or a placeholder.

use std::fmt::{self, Write};

/// askama's escaper for `.layout` templates (configured in `askama.toml`): a value stays on
/// its line and cannot start a placeholder.
#[derive(Debug, Clone, Copy)]
pub struct Escape;

impl askama::filters::Escaper for Escape {
    fn write_escaped_str<W: Write>(&self, mut dest: W, string: &str) -> fmt::Result {
        for ch in string.chars() {
            match ch {
                '\\' => dest.write_str("\\\\")?,
                '{' => dest.write_str("\\{")?,
                '\n' => dest.write_str("\\n")?,
                c if c.is_control() => dest.write_char(' ')?,
                c => dest.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Regular,
    Bold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
    Center,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Font(Weight, f32),
    Color([u8; 3]),
    Text {
        x: f32,
        y: f32,
        align: Align,
        max_width: f32,
        text: String,
    },
    Wrap {
        x: f32,
        y: f32,
        width: f32,
        leading: f32,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: f32,
    },
    Logo {
        x: f32,
        y: f32,
        max_w: f32,
        max_h: f32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Header,
    Footer,
    Block,
    Thead,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub kind: Kind,
    pub height: f32,
    /// Kept on the same page as the next flowed section (always true of a table head).
    pub keep: bool,
    pub ops: Vec<Op>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageSize {
    pub width: f32,
    pub height: f32,
    pub margin_top: f32,
    pub margin_bottom: f32,
}

/// A parsed template: the flow in order (a `None` ends the current table).
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub page: PageSize,
    pub header: Option<Section>,
    pub footer: Option<Section>,
    pub flow: Vec<Option<Section>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("template line {line}: {message}")]
pub struct LayoutError {
    pub line: usize,
    pub message: String,
}

fn num(field: Option<&str>, name: &str) -> Result<f32, String> {
    let s = field.ok_or_else(|| format!("missing {name}"))?;
    s.parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{name} `{s}` is not a number"))
}

/// Splits off `n` space-separated fields and returns them with the rest of the line.
fn fields(rest: &str, n: usize) -> (Vec<&str>, &str) {
    let mut out = Vec::with_capacity(n);
    let mut tail = rest.trim_start();
    for _ in 0..n {
        match tail.split_once(' ') {
            Some((f, t)) => {
                out.push(f);
                tail = t.trim_start();
            }
            None => {
                if !tail.is_empty() {
                    out.push(tail);
                }
                tail = "";
            }
        }
    }
    (out, tail)
}

fn parse_op(word: &str, rest: &str) -> Result<Op, String> {
    let (f, text) = match word {
        "font" => fields(rest, 2),
        "color" => fields(rest, 1),
        "text" => fields(rest, 4),
        "wrap" | "rect" | "logo" => fields(rest, 4),
        "line" => fields(rest, 5),
        other => return Err(format!("unknown operation `{other}`")),
    };
    let n = |i: usize, name: &str| num(f.get(i).copied(), name);
    Ok(match word {
        "font" => Op::Font(
            match f.first().copied() {
                Some("regular") => Weight::Regular,
                Some("bold") => Weight::Bold,
                other => return Err(format!("font weight {other:?} is not regular or bold")),
            },
            n(1, "size")?,
        ),
        "color" => {
            let hex = f.first().copied().unwrap_or_default();
            Op::Color(parse_hex(hex).ok_or_else(|| format!("colour `{hex}` is not RRGGBB"))?)
        }
        "text" => Op::Text {
            x: n(0, "x")?,
            y: n(1, "y")?,
            align: match f.get(2).copied() {
                Some("l") => Align::Left,
                Some("r") => Align::Right,
                Some("c") => Align::Center,
                other => return Err(format!("alignment {other:?} is not l, r or c")),
            },
            max_width: n(3, "max width")?,
            text: text.to_owned(),
        },
        "wrap" => Op::Wrap {
            x: n(0, "x")?,
            y: n(1, "y")?,
            width: n(2, "width")?,
            leading: n(3, "leading")?,
            text: text.to_owned(),
        },
        "rect" => Op::Rect {
            x: n(0, "x")?,
            y: n(1, "y")?,
            w: n(2, "width")?,
            h: n(3, "height")?,
        },
        "logo" => Op::Logo {
            x: n(0, "x")?,
            y: n(1, "y")?,
            max_w: n(2, "width")?,
            max_h: n(3, "height")?,
        },
        _ => Op::Line {
            x1: n(0, "x1")?,
            y1: n(1, "y1")?,
            x2: n(2, "x2")?,
            y2: n(3, "y2")?,
            width: n(4, "width")?,
        },
    })
}

/// `RRGGBB` (with or without `#`).
pub fn parse_hex(s: &str) -> Option<[u8; 3]> {
    let s = s.strip_prefix('#').unwrap_or(s);
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&s[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

pub fn parse(source: &str) -> Result<Layout, LayoutError> {
    let mut page = None;
    let mut header = None;
    let mut footer = None;
    let mut flow = Vec::new();
    let mut current: Option<Section> = None;
    let finish = |s: Section,
                  header: &mut Option<Section>,
                  footer: &mut Option<Section>,
                  flow: &mut Vec<Option<Section>>| match s.kind {
        Kind::Header => *header = Some(s),
        Kind::Footer => *footer = Some(s),
        Kind::Block | Kind::Thead => flow.push(Some(s)),
    };
    for (i, raw) in source.lines().enumerate() {
        let err = |message: String| LayoutError {
            line: i + 1,
            message,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        if let Some(kind) = word.strip_prefix('@') {
            if let Some(s) = current.take() {
                finish(s, &mut header, &mut footer, &mut flow);
            }
            let (f, tail) = fields(rest, 4);
            let n = |i: usize, name: &str| num(f.get(i).copied(), name).map_err(err);
            let kind = match kind {
                "page" => {
                    page = Some(PageSize {
                        width: n(0, "width")?,
                        height: n(1, "height")?,
                        margin_top: n(2, "top margin")?,
                        margin_bottom: n(3, "bottom margin")?,
                    });
                    continue;
                }
                "endtable" => {
                    flow.push(None);
                    continue;
                }
                "header" => Kind::Header,
                "footer" => Kind::Footer,
                "block" => Kind::Block,
                "thead" => Kind::Thead,
                other => return Err(err(format!("unknown section `@{other}`"))),
            };
            let keep = match (f.get(1).copied(), tail) {
                (None, _) => kind == Kind::Thead,
                (Some("keep"), "") => true,
                (Some(other), _) => return Err(err(format!("unknown section flag `{other}`"))),
            };
            current = Some(Section {
                kind,
                height: n(0, "height")?,
                keep,
                ops: Vec::new(),
            });
            continue;
        }
        let op = parse_op(word, rest).map_err(err)?;
        match current.as_mut() {
            Some(s) => s.ops.push(op),
            None => return Err(err("an operation outside a section".into())),
        }
    }
    if let Some(s) = current.take() {
        finish(s, &mut header, &mut footer, &mut flow);
    }
    Ok(Layout {
        page: page.ok_or(LayoutError {
            line: 1,
            message: "the template must start with @page".into(),
        })?,
        header,
        footer,
        flow,
    })
}

/// Template text to display text: escapes undone, `{page}`/`{pages}` filled in, `\n` kept
/// as a line break (callers that draw one line replace it by a space).
pub fn unescape(text: &str, page: usize, pages: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(ch) = text[i..].chars().next() {
        let rest = &text[i..];
        if ch == '\\' {
            match rest[1..].chars().next() {
                Some('n') => {
                    out.push('\n');
                    i += 2;
                }
                Some(c) => {
                    out.push(c);
                    i += 1 + c.len_utf8();
                }
                None => i += 1,
            }
        } else if rest.starts_with("{pages}") {
            out.push_str(&pages.to_string());
            i += "{pages}".len();
        } else if rest.starts_with("{page}") {
            out.push_str(&page.to_string());
            i += "{page}".len();
        } else {
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// A section placed on a page, its top `y` mm from the top of the page.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    pub y: f32,
    pub section: &'a Section,
}

/// Flows the layout onto pages: the header on top of each, the footer at the bottom of each,
/// blocks in order, a table head repeated on every page its table continues on and never
/// left alone at the bottom of one. A block taller than a whole page is placed anyway (cut
/// by the page edge) rather than looping.
pub fn paginate(layout: &Layout) -> Vec<Vec<Placed<'_>>> {
    fn new_page<'a>(
        layout: &'a Layout,
        pages: &mut Vec<Vec<Placed<'a>>>,
        thead: Option<&'a Section>,
    ) -> f32 {
        let mut y = layout.page.margin_top;
        let mut placed = Vec::new();
        for s in layout.header.iter().chain(thead) {
            placed.push(Placed { y, section: s });
            y += s.height;
        }
        pages.push(placed);
        y
    }
    let page = layout.page;
    let footer_h = layout.footer.as_ref().map_or(0.0, |f| f.height);
    let limit = page.height - page.margin_bottom - footer_h;
    let mut pages = Vec::new();
    let mut y = new_page(layout, &mut pages, None);
    let mut thead: Option<&Section> = None;
    let mut flowed_on_page = false;
    for (i, item) in layout.flow.iter().enumerate() {
        let Some(s) = item else {
            thead = None;
            continue;
        };
        let mut need = s.height;
        let mut chain = s.keep;
        for next in layout.flow[i + 1..].iter().flatten() {
            if !chain {
                break;
            }
            need += next.height;
            chain = next.keep;
        }
        if y + need > limit && flowed_on_page {
            let repeat = if s.kind == Kind::Thead { None } else { thead };
            y = new_page(layout, &mut pages, repeat);
        }
        if s.kind == Kind::Thead {
            thead = Some(s);
        }
        if let Some(p) = pages.last_mut() {
            p.push(Placed { y, section: s });
        }
        y += s.height;
        flowed_on_page = true;
    }
    if let Some(f) = &layout.footer {
        for p in &mut pages {
            p.push(Placed {
                y: limit,
                section: f,
            });
        }
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use askama::filters::Escaper;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        Escape.write_escaped_str(&mut out, s).unwrap();
        out
    }

    #[test]
    fn values_cannot_break_out_of_their_line() {
        let hostile = "x\ny {page}\n@block 1\nrect 0 0 100 100";
        let e = escaped(hostile);
        assert!(!e.contains('\n'));
        let src = format!("@page 210 297 10 10\n@block 5\ntext 0 0 l 0 {e}\n");
        let layout = parse(&src).unwrap();
        assert_eq!(layout.flow.len(), 1);
        let Some(Some(Section { ops, .. })) = layout.flow.first() else {
            panic!("one block")
        };
        let [Op::Text { text, .. }] = ops.as_slice() else {
            panic!("one text op: {ops:?}")
        };
        assert_eq!(unescape(text, 3, 9), hostile);
    }

    #[test]
    fn placeholders_are_filled_in_template_text_only() {
        assert_eq!(unescape("Page {page} of {pages}", 2, 5), "Page 2 of 5");
        assert_eq!(unescape(&escaped("{page}"), 2, 5), "{page}");
    }

    #[test]
    fn bad_templates_name_the_line() {
        let e = parse("@page 210 297 10 10\n@block 5\ntext 0 zero l 0 hi\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(parse("@block 5\n").is_err());
        assert!(parse("@page 210 297 10 10\nrect 0 0 1 1\n").is_err());
        assert!(parse("@page 210 297 10 10\n@block 5\nspin 1\n").is_err());
    }

    fn rows(n: usize) -> String {
        let mut src =
            String::from("@page 210 297 10 10\n@header 20\n@footer 10\n@block 30\n@thead 8\n");
        for i in 0..n {
            src.push_str(&format!("@block 6\ntext 0 4 l 0 row {i}\n"));
        }
        src.push_str("@endtable\n@block 40\ntext 0 4 l 0 totals\n");
        src
    }

    #[test]
    fn long_tables_place_every_row_once_with_the_head_on_each_page() {
        let layout = parse(&rows(300)).unwrap();
        let pages = paginate(&layout);
        assert!(pages.len() > 5);
        let mut seen = Vec::new();
        for (n, page) in pages.iter().enumerate() {
            let kinds: Vec<_> = page.iter().map(|p| p.section.kind).collect();
            assert_eq!(kinds.first(), Some(&Kind::Header));
            assert_eq!(kinds.last(), Some(&Kind::Footer));
            for p in page {
                assert!(p.y + p.section.height <= 297.0 - 10.0 + 0.001);
                if let [Op::Text { text, .. }] = p.section.ops.as_slice() {
                    seen.push(text.clone());
                }
            }
            if n > 0 && n + 1 < pages.len() {
                assert_eq!(kinds.get(1), Some(&Kind::Thead), "page {n}");
            }
        }
        let expected: Vec<String> = (0..300)
            .map(|i| format!("row {i}"))
            .chain(["totals".to_owned()])
            .collect();
        assert_eq!(seen, expected);
        let last = pages.last().unwrap();
        assert!(last.iter().any(|p| {
            p.section
                .ops
                .iter()
                .any(|o| matches!(o, Op::Text { text, .. } if text == "totals"))
        }));
    }

    #[test]
    fn a_head_never_ends_a_page() {
        for n in 0..60 {
            let layout = parse(&rows(n)).unwrap();
            for page in paginate(&layout) {
                let flowed: Vec<_> = page
                    .iter()
                    .filter(|p| matches!(p.section.kind, Kind::Block | Kind::Thead))
                    .collect();
                assert!(flowed.last().is_none_or(|p| p.section.kind != Kind::Thead));
            }
        }
    }
}
