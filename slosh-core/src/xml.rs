//! JSON → XML mapping for messages delivered in XML form.
//!
//! Each message becomes one `<p>` element, mapped so that XML which was
//! converted to JSON (`@name` attributes, `#text` text, repeated children as
//! arrays) turns back into the same XML. Whatever the JSON, the output must
//! stay well-formed XML 1.0 (and namespace-well-formed), because one bad
//! message would otherwise break the whole response for every client.
//!
//! Everything writes straight into a caller-supplied `String` so that a
//! response holding many messages is built without intermediate allocations.

use serde_json::{Map, Value};
use std::fmt::{self, Write as _};

/// Bytes that need attention in element text: `&`, `<`, `>`, every C0
/// control except tab and LF (CR must become `&#13;` because parsers
/// normalise a raw CR away; the others are forbidden), and 0xEF, the lead
/// byte of the forbidden U+FFFE and U+FFFF. A table keeps the scan to one
/// load and branch per byte.
static TEXT_NEEDS_WORK: [bool; 256] = needs_work_table(false);

/// Like [`TEXT_NEEDS_WORK`], plus `"` (it ends the value) and tab and LF
/// (attribute-value normalisation would turn them into spaces).
static ATTR_NEEDS_WORK: [bool; 256] = needs_work_table(true);

/// Builds the escaping tables at compile time so that they cannot drift
/// from the replacement logic in [`escape_with`]. Indexing runs in const
/// evaluation, where an index out of range fails the build, not a request.
#[allow(clippy::indexing_slicing)]
const fn needs_work_table(attr: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'\t' as usize] = attr;
    table[b'\n' as usize] = attr;
    table[b'"' as usize] = attr;
    table[b'&' as usize] = true;
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[0xEF] = true;
    table
}

/// Appends the `<p>…</p>` element for one message to `out`.
///
/// A message is simply the value of the element `p`, so the top level uses
/// exactly the rules of every other element (a top-level array becomes
/// `<item>` children, a top-level `@key` an attribute of `<p>`).
pub(crate) fn write_message(out: &mut String, value: &Value) {
    write_element(out, "p", value);
}

/// Appends `text` escaped for element content (and forbidden chars replaced).
///
/// Exposed so that callers writing their own markup around messages escape
/// exactly as the messages themselves are escaped.
pub(crate) fn escape_text(out: &mut String, text: &str) {
    escape_with(out, text, &TEXT_NEEDS_WORK);
}

/// Appends `text` escaped for a double-quoted attribute value.
///
/// Tab, LF and CR are written as character references so that attribute
/// value normalisation does not turn them into spaces.
pub(crate) fn escape_attr(out: &mut String, text: &str) {
    escape_with(out, text, &ATTR_NEEDS_WORK);
}

/// Whether `name` is an XML 1.0 (5th edition) `Name` without ':'.
///
/// ':' is excluded because a name with a colon is a qualified name to a
/// namespace-aware parser (which browsers are), and an undeclared prefix
/// would make the document fail there. Most keys are ASCII, so ASCII is
/// checked byte by byte before falling back to the full character classes.
pub(crate) fn is_xml_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    for (i, &b) in bytes.iter().enumerate() {
        if !b.is_ascii() {
            return is_unicode_name(name);
        }
        let ok = b.is_ascii_alphabetic()
            || b == b'_'
            || (i > 0 && (b.is_ascii_digit() || b == b'-' || b == b'.'));
        if !ok {
            return false;
        }
    }
    true
}

/// The slow path of [`is_xml_name`], for names with non-ASCII characters,
/// which XML allows as letters.
fn is_unicode_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
}

/// XML 1.0 5th edition `NameStartChar`, minus ':' (see [`is_xml_name`]).
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z'
        | '_'
        | 'a'..='z'
        | '\u{C0}'..='\u{D6}'
        | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}'
        | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}'
        | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}'
        | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 5th edition `NameChar`, minus ':' (see [`is_xml_name`]).
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c,
            '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Escapes `text` into `out`, copying clean runs as whole slices so that the
/// common case (nothing to escape) is a scan plus one `push_str`.
fn escape_with(out: &mut String, text: &str, needs_work: &[bool; 256]) {
    let bytes = text.as_bytes();
    let mut clean_from = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        // A `u8` always indexes a 256-entry table; the optimizer drops the
        // check `get` adds.
        if needs_work.get(usize::from(b)) != Some(&true) {
            i += 1;
            continue;
        }
        // Every flagged byte is ASCII or a UTF-8 lead byte, so `i` is a char
        // boundary and the slicing below cannot split a character.
        let (replacement, len) = match b {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\t' => ("&#9;", 1),
            b'\n' => ("&#10;", 1),
            b'\r' => ("&#13;", 1),
            0xEF => {
                // U+FFFE and U+FFFF are EF BF BE and EF BF BF.
                if bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF))
                {
                    ("\u{FFFD}", 3)
                } else {
                    // Any other U+F000..U+FFFD: three bytes, all allowed.
                    i += 3;
                    continue;
                }
            }
            // The remaining flagged bytes are C0 controls XML 1.0 forbids.
            _ => ("\u{FFFD}", 1),
        };
        out.push_str(&text[clean_from..i]);
        out.push_str(replacement);
        i += len;
        clean_from = i;
    }
    out.push_str(&text[clean_from..]);
}

/// Adapter so that `Display` output (compact JSON of nested values) is
/// escaped on its way into `out` without first being collected in a String.
struct Escaper<'a> {
    /// Where the escaped text goes.
    out: &'a mut String,
    /// Escape for an attribute value rather than for element content.
    attr: bool,
}

impl fmt::Write for Escaper<'_> {
    /// Escapes each chunk as it arrives; chunks are whole `str`s, so escaping
    /// per chunk is the same as escaping the concatenation.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.attr {
            escape_attr(self.out, s);
        } else {
            escape_text(self.out, s);
        }
        Ok(())
    }
}

/// Appends `value` as text (`attr == false`) or as an attribute value.
///
/// Strings are escaped; numbers and booleans are written as serde_json
/// prints them (they never need escaping); null writes nothing; objects and
/// arrays, which have no textual form in XML, become their compact JSON.
fn write_value_text(out: &mut String, value: &Value, attr: bool) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => {
            if attr {
                escape_attr(out, s);
            } else {
                escape_text(out, s);
            }
        }
        // Writing into a String cannot fail, so the fmt::Result carries no
        // information here.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Array(_) | Value::Object(_) => {
            let _ = write!(Escaper { out, attr }, "{value}");
        }
    }
}

/// Whether [`write_value_text`] would write nothing, so that an element
/// holding only such a value can be self-closed.
fn is_empty_text(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// The attribute name for object key `key`, or `None` if the key must be
/// written as a child element instead.
///
/// A key is an attribute only if it is `@` plus a valid name, and:
/// - not `name` on an element that is already `<_ name="…">`, since a
///   duplicate attribute makes the document malformed;
/// - not `xmlns`, since that would declare a default namespace (moving the
///   element and its descendants out of the no-namespace the reader expects,
///   and failing namespace-aware parsers for reserved namespace names).
fn attribute_name(key: &str, name_taken: bool) -> Option<&str> {
    let name = key.strip_prefix('@')?;
    if !is_xml_name(name) || name == "xmlns" || (name_taken && name == "name") {
        return None;
    }
    Some(name)
}

/// Appends the element for `key` with content `value`.
///
/// A key that is not a valid name is written as `<_ name="key">` so that no
/// key is lost and the document stays well-formed. An element without
/// content is always self-closed, so `null`, `""`, `{}` and `[]` all give
/// `<key/>`.
fn write_element(out: &mut String, key: &str, value: &Value) {
    out.push('<');
    let (tag, name_taken) = if is_xml_name(key) {
        out.push_str(key);
        (key, false)
    } else {
        out.push_str("_ name=\"");
        escape_attr(out, key);
        out.push('"');
        ("_", true)
    };

    let has_content = match value {
        Value::Object(map) => write_object_content(out, map, name_taken),
        Value::Array(items) => {
            // An array that is the whole value of one element (top level, or
            // an item of another array) has no key to repeat, so its items
            // become `<item>` children.
            for (i, item) in items.iter().enumerate() {
                if i == 0 {
                    out.push('>');
                }
                write_element(out, "item", item);
            }
            !items.is_empty()
        }
        scalar => {
            let empty = is_empty_text(scalar);
            if !empty {
                out.push('>');
                write_value_text(out, scalar, false);
            }
            !empty
        }
    };

    if has_content {
        out.push_str("</");
        out.push_str(tag);
        out.push('>');
    } else {
        out.push_str("/>");
    }
}

/// Writes the attributes of an object, closes the start tag if any content
/// follows, and writes that content; returns whether there was content.
///
/// The start tag is still open on entry. Attributes must all come before any
/// content, so they are written in a first pass; the second pass writes
/// `#text` and children in key order, which keeps document order equal to
/// key order.
fn write_object_content(out: &mut String, map: &Map<String, Value>, name_taken: bool) -> bool {
    for (key, value) in map {
        if let Some(name) = attribute_name(key, name_taken) {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            write_value_text(out, value, true);
            out.push('"');
        }
    }

    let mut start_tag_open = true;
    for (key, value) in map {
        if key == "#text" {
            if !is_empty_text(value) {
                close_start_tag(out, &mut start_tag_open);
                write_value_text(out, value, false);
            }
        } else if attribute_name(key, name_taken).is_some() {
            // Already written in the first pass.
        } else if let Value::Array(items) = value {
            // One child per item, so that repeated XML children, which
            // XML→JSON converters turn into an array, come back as they were.
            for item in items {
                close_start_tag(out, &mut start_tag_open);
                write_element(out, key, item);
            }
        } else {
            close_start_tag(out, &mut start_tag_open);
            write_element(out, key, value);
        }
    }
    !start_tag_open
}

/// Ends the start tag before the first piece of content, so that an element
/// turns out self-closing exactly when nothing was written into it.
fn close_start_tag(out: &mut String, start_tag_open: &mut bool) {
    if *start_tag_open {
        out.push('>');
        *start_tag_open = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quick_xml::events::Event;
    use quick_xml::Reader;
    use quick_xml::XmlVersion;
    use serde_json::json;

    /// The frame a message is delivered in, so tests parse what clients parse.
    const PROLOGUE: &str =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<res max=\"1\" saw=\"1\" delivering=\"1\">";

    /// The message alone, for exact comparisons of the mapping.
    fn xml(value: &Value) -> String {
        let mut out = String::new();
        write_message(&mut out, value);
        out
    }

    /// The message inside the full response frame, as a client parses it.
    fn document(value: &Value) -> String {
        let mut doc = String::from(PROLOGUE);
        write_message(&mut doc, value);
        doc.push_str("</res>");
        doc
    }

    // ---- spec examples ----

    #[test]
    fn spec_example_response_message_event() {
        let v = json!({"response":{"message":[{"@id":"123","event":"Some Event Text"}]}});
        assert_eq!(
            xml(&v),
            "<p><response><message id=\"123\"><event>Some Event Text</event></message></response></p>"
        );
    }

    #[test]
    fn spec_example_single_item_array_is_one_child() {
        assert_eq!(xml(&json!({"x":["hello!"]})), "<p><x>hello!</x></p>");
    }

    // ---- mapping rules ----

    #[test]
    fn at_keys_become_attributes_of_their_element() {
        assert_eq!(
            xml(&json!({"a":{"@id":"1","@n":2,"@t":true}})),
            "<p><a id=\"1\" n=\"2\" t=\"true\"/></p>"
        );
    }

    #[test]
    fn top_level_at_keys_become_attributes_of_p() {
        assert_eq!(xml(&json!({"@id":"7","b":"x"})), "<p id=\"7\"><b>x</b></p>");
    }

    #[test]
    fn hash_text_becomes_text_of_its_element() {
        assert_eq!(
            xml(&json!({"a":{"@id":"1","#text":"hi"}})),
            "<p><a id=\"1\">hi</a></p>"
        );
    }

    #[test]
    fn other_keys_become_child_elements() {
        assert_eq!(
            xml(&json!({"a":{"b":"1","c":"2"}})),
            "<p><a><b>1</b><c>2</c></a></p>"
        );
    }

    #[test]
    fn array_values_become_one_child_per_item() {
        assert_eq!(
            xml(&json!({"k":["a",{"@i":"2"},3]})),
            "<p><k>a</k><k i=\"2\"/><k>3</k></p>"
        );
    }

    #[test]
    fn strings_numbers_and_booleans_become_text() {
        assert_eq!(
            xml(&json!({"s":"x","i":-12,"f":1.5,"e":1e300,"t":true,"f2":false})),
            "<p><s>x</s><i>-12</i><f>1.5</f><e>1e+300</e><t>true</t><f2>false</f2></p>"
        );
    }

    #[test]
    fn null_becomes_a_self_closing_element() {
        assert_eq!(xml(&json!({"k":null})), "<p><k/></p>");
    }

    #[test]
    fn elements_without_content_are_self_closing() {
        assert_eq!(
            xml(&json!({"s":"","o":{},"a":{"@x":"1"},"t":{"#text":""}})),
            "<p><s/><o/><a x=\"1\"/><t/></p>"
        );
    }

    #[test]
    fn top_level_array_becomes_item_children_of_p() {
        assert_eq!(
            xml(&json!([1, "b", null])),
            "<p><item>1</item><item>b</item><item/></p>"
        );
    }

    #[test]
    fn top_level_scalar_becomes_text_of_p() {
        assert_eq!(xml(&json!("hi")), "<p>hi</p>");
        assert_eq!(xml(&json!(42)), "<p>42</p>");
        assert_eq!(xml(&json!(false)), "<p>false</p>");
    }

    #[test]
    fn top_level_null_and_empty_values_are_an_empty_p() {
        assert_eq!(xml(&json!(null)), "<p/>");
        assert_eq!(xml(&json!([])), "<p/>");
        assert_eq!(xml(&json!({})), "<p/>");
        assert_eq!(xml(&json!("")), "<p/>");
    }

    #[test]
    fn empty_array_under_a_key_writes_no_element() {
        assert_eq!(xml(&json!({"k":[],"j":"x"})), "<p><j>x</j></p>");
        assert_eq!(xml(&json!({"k":[]})), "<p/>");
    }

    #[test]
    fn array_inside_array_becomes_item_children() {
        assert_eq!(
            xml(&json!({"k":[[1,2],3]})),
            "<p><k><item>1</item><item>2</item></k><k>3</k></p>"
        );
        assert_eq!(
            xml(&json!([[1], []])),
            "<p><item><item>1</item></item><item/></p>"
        );
    }

    #[test]
    fn invalid_keys_become_underscore_elements_with_the_key_as_name() {
        assert_eq!(
            xml(&json!({"1abc":"x","":"y","a b":{"c":"z"}})),
            "<p><_ name=\"1abc\">x</_><_ name=\"\">y</_><_ name=\"a b\"><c>z</c></_></p>"
        );
    }

    #[test]
    fn colon_keys_are_not_names() {
        assert_eq!(xml(&json!({"a:b":"x"})), "<p><_ name=\"a:b\">x</_></p>");
    }

    #[test]
    fn non_ascii_letters_are_valid_names() {
        assert_eq!(
            xml(&json!({"é":"1","日本":"2","Ωmega":{"@ñ":"3"}})),
            "<p><é>1</é><日本>2</日本><Ωmega ñ=\"3\"/></p>"
        );
    }

    #[test]
    fn at_key_with_object_or_array_value_is_compact_json_attribute() {
        assert_eq!(
            xml(&json!({"a":{"@o":{"k":"v<"},"@l":[1,"x"]}})),
            "<p><a o=\"{&quot;k&quot;:&quot;v&lt;&quot;}\" l=\"[1,&quot;x&quot;]\"/></p>"
        );
    }

    #[test]
    fn at_key_with_null_is_an_empty_attribute() {
        assert_eq!(xml(&json!({"a":{"@n":null}})), "<p><a n=\"\"/></p>");
    }

    #[test]
    fn hash_text_with_object_or_array_value_is_compact_json_text() {
        assert_eq!(
            xml(&json!({"a":{"#text":{"k":"<"}}})),
            "<p><a>{\"k\":\"&lt;\"}</a></p>"
        );
        assert_eq!(xml(&json!({"#text":[1,2]})), "<p>[1,2]</p>");
    }

    #[test]
    fn attributes_come_before_children_in_key_order() {
        assert_eq!(
            xml(&json!({"c":"1","@z":"2","d":"3","@a":"4"})),
            "<p z=\"2\" a=\"4\"><c>1</c><d>3</d></p>"
        );
    }

    #[test]
    fn text_keeps_its_place_among_children() {
        assert_eq!(
            xml(&json!({"a":"1","#text":"mid","b":"2"})),
            "<p><a>1</a>mid<b>2</b></p>"
        );
    }

    #[test]
    fn invalid_attribute_names_become_underscore_children() {
        assert_eq!(
            xml(&json!({"@":"1","@a b":"2","@a:b":"3","@1x":"4"})),
            "<p><_ name=\"@\">1</_><_ name=\"@a b\">2</_><_ name=\"@a:b\">3</_><_ name=\"@1x\">4</_></p>"
        );
    }

    #[test]
    fn at_name_under_underscore_element_becomes_a_child_not_a_duplicate() {
        assert_eq!(
            xml(&json!({"a b":{"@name":"n","@id":"i"}})),
            "<p><_ name=\"a b\" id=\"i\"><_ name=\"@name\">n</_></_></p>"
        );
        // On a normal element `@name` is an ordinary attribute.
        assert_eq!(xml(&json!({"a":{"@name":"n"}})), "<p><a name=\"n\"/></p>");
    }

    #[test]
    fn at_xmlns_becomes_a_child_so_namespaces_cannot_change() {
        assert_eq!(
            xml(&json!({"@xmlns":"http://www.w3.org/2000/xmlns/"})),
            "<p><_ name=\"@xmlns\">http://www.w3.org/2000/xmlns/</_></p>"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            xml(&json!("a&b<c>d]]>\"'\t\n\re")),
            "<p>a&amp;b&lt;c&gt;d]]&gt;\"'\t\n&#13;e</p>"
        );
    }

    #[test]
    fn attributes_are_escaped() {
        assert_eq!(
            xml(&json!({"@a":"a&b<c>d\"'\t\n\re"})),
            "<p a=\"a&amp;b&lt;c&gt;d&quot;'&#9;&#10;&#13;e\"/>"
        );
    }

    #[test]
    fn forbidden_characters_become_replacement_char_everywhere() {
        let bad = "a\u{0}\u{8}\u{B}\u{C}\u{E}\u{1F}\u{FFFE}\u{FFFF}b";
        let good = "a\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}b";
        let mut map = Map::new();
        map.insert("@x".into(), json!(bad));
        map.insert(bad.into(), json!(bad));
        map.insert("#text".into(), json!(bad));
        assert_eq!(
            xml(&Value::Object(map)),
            format!("<p x=\"{good}\"><_ name=\"{good}\">{good}</_>{good}</p>")
        );
    }

    #[test]
    fn allowed_characters_near_forbidden_ones_pass_through() {
        let s = "\u{FFFD}\u{FFFC}\u{F900}\u{EFFFF}\u{85}\u{2028}\u{7F}";
        assert_eq!(xml(&json!(s)), format!("<p>{s}</p>"));
        let mut out = String::new();
        escape_attr(&mut out, s);
        assert_eq!(out, s);
    }

    #[test]
    fn escaping_appends_to_existing_output() {
        let mut out = String::from("x");
        escape_text(&mut out, "<");
        escape_attr(&mut out, "\"");
        write_message(&mut out, &json!(1));
        assert_eq!(out, "x&lt;&quot;<p>1</p>");
    }

    #[test]
    fn xml_names_follow_xml_1_0_without_colon() {
        for ok in [
            "a",
            "_",
            "A-b.c_1",
            "é",
            "日本",
            "x·y",
            "a\u{300}",
            "\u{10000}",
        ] {
            assert!(is_xml_name(ok), "{ok:?} should be a name");
        }
        for bad in [
            "", "1a", "-a", ".a", "a:b", ":", "a b", "@a", "#text", "·x", "a\u{D7}",
        ] {
            assert!(!is_xml_name(bad), "{bad:?} should not be a name");
        }
    }

    // ---- reference checks used by the property tests ----

    /// XML 1.0 `Char`, written independently of the escaping tables.
    fn is_xml_char(c: char) -> bool {
        matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    }

    /// `NameStartChar` ranges copied from the spec, minus ':'.
    const NAME_START_RANGES: &[(char, char)] = &[
        ('A', 'Z'),
        ('_', '_'),
        ('a', 'z'),
        ('\u{C0}', '\u{D6}'),
        ('\u{D8}', '\u{F6}'),
        ('\u{F8}', '\u{2FF}'),
        ('\u{370}', '\u{37D}'),
        ('\u{37F}', '\u{1FFF}'),
        ('\u{200C}', '\u{200D}'),
        ('\u{2070}', '\u{218F}'),
        ('\u{2C00}', '\u{2FEF}'),
        ('\u{3001}', '\u{D7FF}'),
        ('\u{F900}', '\u{FDCF}'),
        ('\u{FDF0}', '\u{FFFD}'),
        ('\u{10000}', '\u{EFFFF}'),
    ];
    /// The extra `NameChar` ranges copied from the spec.
    const NAME_EXTRA_RANGES: &[(char, char)] = &[
        ('-', '-'),
        ('.', '.'),
        ('0', '9'),
        ('\u{B7}', '\u{B7}'),
        ('\u{300}', '\u{36F}'),
        ('\u{203F}', '\u{2040}'),
    ];

    /// The XML 1.0 `Name` production (minus ':') as a plain range table.
    fn reference_is_name(name: &str) -> bool {
        let within =
            |ranges: &[(char, char)], c: char| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        let mut chars = name.chars();
        chars.next().is_some_and(|c| within(NAME_START_RANGES, c))
            && chars.all(|c| within(NAME_START_RANGES, c) || within(NAME_EXTRA_RANGES, c))
    }

    /// Resolves a reference the way an XML 1.0 parser must, rejecting
    /// anything that is not predefined or that names a forbidden character.
    fn resolve_ref(r: &quick_xml::events::BytesRef<'_>) -> Result<String, String> {
        match r.resolve_char_ref().map_err(|e| e.to_string())? {
            Some(c) if is_xml_char(c) => Ok(c.to_string()),
            Some(c) => Err(format!("reference to forbidden char {c:?}")),
            None => quick_xml::escape::resolve_predefined_entity(r)
                .map(str::to_owned)
                .ok_or_else(|| format!("unknown entity {:?}", &**r)),
        }
    }

    /// Attributes of a start tag, checked for duplicates, names and values.
    fn checked_attributes(
        e: &quick_xml::events::BytesStart<'_>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut attrs = e.attributes();
        attrs.with_checks(true);
        let mut result = Vec::new();
        for attr in attrs {
            let attr = attr.map_err(|err| err.to_string())?;
            let key = attr.key.into_inner();
            if !reference_is_name(key) || key == "xmlns" {
                return Err(format!("bad attribute name {key:?}"));
            }
            if attr.value.contains('<') {
                return Err(format!("raw '<' in attribute {key:?}"));
            }
            let value = attr
                .normalized_value(XmlVersion::Explicit1_0)
                .map_err(|err| err.to_string())?;
            if let Some(c) = value.chars().find(|&c| !is_xml_char(c)) {
                return Err(format!("forbidden char {c:?} in attribute {key:?}"));
            }
            result.push((key.to_owned(), value.into_owned()));
        }
        Ok(result)
    }

    /// An element being rebuilt into JSON by the reverse mapping.
    #[derive(Default)]
    struct Frame {
        /// Tag name, to match the end tag and key the parent's entry.
        name: String,
        /// Attributes in document order.
        attrs: Vec<(String, String)>,
        /// Finished child elements in document order.
        children: Vec<(String, Value)>,
        /// All text of the element, concatenated.
        text: String,
    }

    impl Frame {
        /// The reverse mapping for XML-shaped JSON: a bare element is its
        /// text; otherwise attributes become `@` keys, text `#text`, and
        /// repeated children an array.
        fn into_value(self) -> Value {
            if self.attrs.is_empty() && self.children.is_empty() {
                return Value::String(self.text);
            }
            let mut map = Map::new();
            for (k, v) in self.attrs {
                map.insert(format!("@{k}"), Value::String(v));
            }
            if !self.text.is_empty() {
                map.insert("#text".into(), Value::String(self.text));
            }
            for (k, v) in self.children {
                match map.get_mut(&k) {
                    None => {
                        map.insert(k, v);
                    }
                    Some(Value::Array(items)) => items.push(v),
                    Some(existing) => {
                        let first = existing.take();
                        *existing = Value::Array(vec![first, v]);
                    }
                }
            }
            Value::Object(map)
        }
    }

    /// Parses `doc` with every check enabled and returns the root element
    /// rebuilt by the reverse mapping; errors describe the first problem.
    fn parse_document(doc: &str) -> Result<Value, String> {
        if let Some(c) = doc.chars().find(|&c| !is_xml_char(c)) {
            return Err(format!("forbidden char {c:?} in document"));
        }
        let mut reader = Reader::from_str(doc);
        reader.config_mut().check_end_names = true;
        let mut stack: Vec<Frame> = Vec::new();
        let mut root: Option<Value> = None;
        loop {
            let event = reader.read_event().map_err(|e| e.to_string())?;
            match event {
                Event::Decl(_) => {}
                Event::Start(e) | Event::Empty(e) if stack.is_empty() && root.is_some() => {
                    return Err(format!("second root element {:?}", e.name().into_inner()));
                }
                Event::Start(e) => {
                    let name = e.name().into_inner();
                    if !reference_is_name(name) {
                        return Err(format!("bad element name {name:?}"));
                    }
                    stack.push(Frame {
                        name: name.to_owned(),
                        attrs: checked_attributes(&e)?,
                        ..Frame::default()
                    });
                }
                Event::Empty(e) => {
                    let name = e.name().into_inner();
                    if !reference_is_name(name) {
                        return Err(format!("bad element name {name:?}"));
                    }
                    let frame = Frame {
                        name: name.to_owned(),
                        attrs: checked_attributes(&e)?,
                        ..Frame::default()
                    };
                    finish(&mut stack, &mut root, frame)?;
                }
                Event::End(e) => {
                    let frame = stack.pop().ok_or("end tag without start")?;
                    if frame.name != e.name().into_inner() {
                        return Err(format!(
                            "</{}> closes <{}>",
                            e.name().into_inner(),
                            frame.name
                        ));
                    }
                    finish(&mut stack, &mut root, frame)?;
                }
                Event::Text(t) => {
                    let text = t.xml10_content();
                    match stack.last_mut() {
                        Some(frame) => frame.text.push_str(&text),
                        None if text.trim().is_empty() => {}
                        None => return Err(format!("text outside root: {text:?}")),
                    }
                }
                Event::GeneralRef(r) => {
                    let text = resolve_ref(&r)?;
                    stack
                        .last_mut()
                        .ok_or("reference outside root")?
                        .text
                        .push_str(&text);
                }
                Event::Eof => break,
                other => return Err(format!("unexpected event {other:?}")),
            }
        }
        if !stack.is_empty() {
            return Err("unclosed elements".into());
        }
        root.ok_or_else(|| "no root element".into())
    }

    /// Hands a completed element to its parent, or makes it the root.
    fn finish(stack: &mut [Frame], root: &mut Option<Value>, frame: Frame) -> Result<(), String> {
        let name = frame.name.clone();
        let value = frame.into_value();
        match stack.last_mut() {
            Some(parent) => parent.children.push((name, value)),
            None if root.is_none() => *root = Some(value),
            None => return Err("second root element".into()),
        }
        Ok(())
    }

    /// The JSON that `<res>` maps back to, holding just the message.
    fn message_of(res: Value) -> Result<Value, String> {
        let Value::Object(mut map) = res else {
            return Err("res is not an object".into());
        };
        map.remove("p").ok_or_else(|| "no <p>".into())
    }

    // ---- strategies ----

    /// Characters weighted towards those that need escaping or replacing.
    fn any_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => any::<char>(),
            2 => proptest::char::range('\0', '\u{7F}'),
            2 => proptest::sample::select(vec![
                '&', '<', '>', '"', '\'', '\r', '\n', '\t', ']', ' ', 'é', '\u{85}', '\u{2028}',
                '\u{FFFE}', '\u{FFFF}', '\u{FFFD}', '\u{FFFC}', '\u{F900}', '\u{EFFFF}',
            ]),
        ]
    }

    /// Short strings of [`any_char`], control characters included.
    fn any_string() -> impl Strategy<Value = String> {
        proptest::collection::vec(any_char(), 0..10).prop_map(String::from_iter)
    }

    /// Object keys mixing valid names, `@`/`#` keys and invalid names.
    fn any_key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::sample::select(vec![
                "@x", "#text", "a:b", "", "1abc", "name", "@name", "é", "ünï", "日本", "@", "@a b",
                "@a:b", "@xmlns", "xmlns", "item", "_", "@é", "#other", "-a", ".a", "a-b.c", "@1",
            ])
            .prop_map(String::from),
            2 => "[a-c]{1,2}",
            2 => "@[a-c]{1,2}",
            1 => any_string(),
        ]
    }

    /// Arbitrary JSON values, nested a few levels.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any_string().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((any_key(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// Characters XML can carry unchanged.
    fn xml_char() -> impl Strategy<Value = char> {
        any_char().prop_filter("XML Char", |&c| is_xml_char(c))
    }

    /// Strings that survive the mapping unchanged.
    fn xml_string() -> impl Strategy<Value = String> {
        proptest::collection::vec(xml_char(), 0..10).prop_map(String::from_iter)
    }

    /// Valid element and attribute names, ASCII and not.
    fn xml_name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-zA-Z_][a-zA-Z0-9_.-]{0,4}",
            1 => proptest::sample::select(vec!["é", "ñame", "日本", "Ωmega", "x·y", "a\u{300}", "item", "name", "_"])
                .prop_map(String::from),
        ]
        .prop_filter("xmlns is not an attribute", |n| n != "xmlns")
    }

    /// JSON that the reverse mapping reproduces exactly: valid names, string
    /// values, arrays of two or more non-array items, no empty objects and no
    /// object holding only `#text` (both would come back as strings).
    fn xml_shaped_json() -> impl Strategy<Value = Value> {
        xml_string()
            .prop_map(Value::String)
            .prop_recursive(3, 32, 4, |inner| {
                let child = prop_oneof![
                    3 => inner.clone(),
                    1 => proptest::collection::vec(inner, 2..4).prop_map(Value::Array),
                ];
                (
                    proptest::collection::vec((xml_name(), xml_string()), 0..3),
                    proptest::collection::vec((xml_name(), child), 0..4),
                    proptest::option::of(xml_string().prop_filter("non-empty", |s| !s.is_empty())),
                    any::<proptest::sample::Index>(),
                )
                    .prop_filter_map(
                        "needs an attribute or a child",
                        |(attrs, children, text, at)| {
                            let mut map = Map::new();
                            for (name, value) in attrs {
                                map.insert(format!("@{name}"), Value::String(value));
                            }
                            let children: Map<String, Value> = children.into_iter().collect();
                            if map.is_empty() && children.is_empty() {
                                return None;
                            }
                            let text_at = at.index(children.len() + 1);
                            let mut text = text;
                            for (i, (name, value)) in children.into_iter().enumerate() {
                                if i == text_at {
                                    if let Some(t) = text.take() {
                                        map.insert("#text".into(), Value::String(t));
                                    }
                                }
                                map.insert(name, value);
                            }
                            if let Some(t) = text {
                                map.insert("#text".into(), Value::String(t));
                            }
                            Some(Value::Object(map))
                        },
                    )
            })
    }

    proptest! {
        #[test]
        fn any_json_gives_a_well_formed_document(value in any_json()) {
            let doc = document(&value);
            if let Err(err) = parse_document(&doc) {
                prop_assert!(false, "{err}\n{doc}");
            }
        }

        #[test]
        fn xml_shaped_json_survives_a_round_trip(value in xml_shaped_json()) {
            let doc = document(&value);
            let back = parse_document(&doc).and_then(message_of);
            prop_assert_eq!(back, Ok(value), "{}", doc);
        }

        #[test]
        fn any_string_survives_with_forbidden_chars_replaced(s in any_string()) {
            let expected: String = s.chars().map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' }).collect();
            let doc = document(&json!({"@a": s, "k": s}));
            let back = parse_document(&doc).and_then(message_of);
            prop_assert_eq!(back, Ok(json!({"@a": expected, "k": expected})));
        }

        #[test]
        fn is_xml_name_matches_the_reference(name in prop_oneof![any_key(), any_string(), xml_name()]) {
            prop_assert_eq!(is_xml_name(&name), reference_is_name(&name));
        }
    }
}
