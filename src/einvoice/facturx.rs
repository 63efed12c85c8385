//! Factur-X / ZUGFeRD (profile EN 16931): the invoice's PDF as PDF/A-3B carrying its CII as
//! `factur-x.xml`, so one file is both what a person reads and what an accounting system
//! imports.
//!
//! What is added to the PDF recur already renders (every font embedded and subset, a
//! deterministic trailer `/ID`): the XML as an embedded file (`/Subtype /text#2Fxml`) named
//! in the catalog's `/Names /EmbeddedFiles` and `/AF` with `/AFRelationship /Alternative`
//! (the XML is the same invoice in another form), an sRGB `/OutputIntents` entry
//! (`GTS_PDFA1`, the ICC profile from moxcms), XMP metadata declaring PDF/A-3B and the
//! Factur-X properties with their PDF/A extension schema, and an Info dictionary in step with
//! the XMP. The header becomes PDF 1.7. Full ISO 19005-3 conformance is not checkable here (no
//! veraPDF); what the Factur-X validators read is checked by `scripts/einvoice_check.py`.

use askama::Template;
use chrono::{DateTime, Utc};
use lopdf::{Object, Stream, StringFormat, dictionary};
use sha2::{Digest, Sha256};

pub const FILE_NAME: &str = "factur-x.xml";

#[derive(Debug, thiserror::Error)]
pub enum FacturXError {
    #[error("the invoice PDF could not be read: {0}")]
    Read(String),
    #[error("the sRGB profile could not be encoded: {0}")]
    Icc(String),
    #[error("XMP template: {0}")]
    Template(#[from] askama::Error),
    #[error("the Factur-X PDF could not be written: {0}")]
    Write(String),
}

/// What the XMP and the Info dictionary say about the document.
pub struct Meta<'a> {
    pub title: &'a str,
    pub author: &'a str,
    pub issued: DateTime<Utc>,
}

#[derive(Template)]
#[template(path = "einvoice/facturx_xmp.xml")]
struct Xmp<'a> {
    title: &'a str,
    author: &'a str,
    /// ISO 8601, as XMP dates are written.
    date: String,
    file_name: &'a str,
}

fn pdf_date(t: DateTime<Utc>) -> Object {
    Object::string_literal(t.format("D:%Y%m%d%H%M%S+00'00'").to_string())
}

fn text(s: &str) -> Object {
    // PDF text strings outside ASCII are UTF-16BE with a byte order mark.
    if s.is_ascii() {
        Object::string_literal(s)
    } else {
        let bytes = [0xFE_u8, 0xFF]
            .into_iter()
            .chain(s.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        Object::String(bytes, StringFormat::Hexadecimal)
    }
}

/// The sRGB ICC profile of the output intent.
fn srgb_profile() -> Result<Vec<u8>, FacturXError> {
    moxcms::ColorProfile::new_srgb()
        .encode()
        .map_err(|e| FacturXError::Icc(format!("{e:?}")))
}

/// `pdf` (a PDF recur rendered) with `xml` (the same invoice's CII) embedded, as Factur-X.
/// The same inputs give the same bytes.
pub fn embed(pdf: &[u8], xml: &str, meta: &Meta<'_>) -> Result<Vec<u8>, FacturXError> {
    let mut doc = lopdf::Document::load_mem(pdf).map_err(|e| FacturXError::Read(e.to_string()))?;
    doc.version = "1.7".into();
    let date = pdf_date(meta.issued);

    let file = doc.add_object(Stream::new(
        dictionary! {
            "Type" => "EmbeddedFile",
            "Subtype" => Object::Name(b"text/xml".to_vec()),
            "Params" => dictionary! {
                "Size" => xml.len() as i64,
                "ModDate" => date.clone(),
            },
        },
        xml.as_bytes().to_vec(),
    ));
    let spec = doc.add_object(dictionary! {
        "Type" => "Filespec",
        "F" => Object::string_literal(FILE_NAME),
        "UF" => Object::string_literal(FILE_NAME),
        "Desc" => Object::string_literal("Factur-X invoice (EN 16931)"),
        "AFRelationship" => "Alternative",
        "EF" => dictionary! { "F" => file, "UF" => file },
    });
    let icc = doc.add_object(Stream::new(dictionary! { "N" => 3 }, srgb_profile()?));
    let xmp = Xmp {
        title: meta.title,
        author: meta.author,
        date: meta.issued.format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
        file_name: FILE_NAME,
    }
    .render()?;
    // XMP stays uncompressed so that tools find the packet by scanning.
    let mut metadata = Stream::new(
        dictionary! { "Type" => "Metadata", "Subtype" => "XML" },
        xmp.into_bytes(),
    );
    metadata.allows_compression = false;
    let metadata = doc.add_object(metadata);
    let info = doc.add_object(dictionary! {
        "Title" => text(meta.title),
        "Author" => text(meta.author),
        "Creator" => Object::string_literal("recur"),
        "Producer" => Object::string_literal("recur"),
        "CreationDate" => date.clone(),
        "ModDate" => date,
    });

    let catalog = doc
        .catalog_mut()
        .map_err(|e| FacturXError::Read(e.to_string()))?;
    catalog.set(
        "Names",
        dictionary! {
            "EmbeddedFiles" => dictionary! {
                "Names" => vec![Object::string_literal(FILE_NAME), spec.into()],
            },
        },
    );
    catalog.set("AF", vec![Object::from(spec)]);
    catalog.set("Metadata", metadata);
    catalog.set(
        "OutputIntents",
        vec![Object::Dictionary(dictionary! {
            "Type" => "OutputIntent",
            "S" => "GTS_PDFA1",
            "OutputConditionIdentifier" => Object::string_literal("sRGB IEC61966-2.1"),
            "Info" => Object::string_literal("sRGB IEC61966-2.1"),
            "DestOutputProfile" => icc,
        })],
    );
    catalog.set("MarkInfo", dictionary! { "Marked" => false });
    doc.trailer.set("Info", info);
    // A new document id: the rendered PDF's with the XML added, so each Factur-X file of a
    // different invoice differs and the same one is reproducible.
    let mut hasher = Sha256::new();
    hasher.update(pdf);
    hasher.update(xml.as_bytes());
    let id = hasher.finalize()[..16].to_vec();
    doc.trailer.set(
        "ID",
        vec![
            Object::String(id.clone(), StringFormat::Hexadecimal),
            Object::String(id, StringFormat::Hexadecimal),
        ],
    );
    let mut out = Vec::new();
    doc.save_to(&mut out)
        .map_err(|e| FacturXError::Write(e.to_string()))?;
    Ok(out)
}
