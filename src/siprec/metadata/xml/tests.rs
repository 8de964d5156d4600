//! The tolerant tree reader on its own: what the sanitising pass escapes,
//! how lenient end tags close, the depth bound, where reading stops.

use super::*;

/// Depth of the first-child chain under `el` (`el` itself counts 1).
fn depth(el: &Element) -> usize {
    1 + el.children.first().map_or(0, depth)
}

#[test]
fn sanitize_escapes_only_what_cannot_start_markup() {
    let xml = "<a><b>x</b><sip:u@h;p=1> <!-- c<d --><![CDATA[<e>]]><?pi <f?>< <!{CDATA{y}}></a>";
    assert_eq!(
        sanitize(xml),
        "<a><b>x</b>&lt;sip:u@h;p=1> <!-- c<d --><![CDATA[<e>]]><?pi <f?>&lt; &lt;!{CDATA{y}}></a>"
    );
    // A DOCTYPE is kept so that the lenient pass still refuses it.
    let doctype = "<!DOCTYPE r><recording/>";
    assert_eq!(sanitize(doctype), doctype);
    assert!(matches!(
        build_tree(&sanitize(doctype), Mode::Lenient),
        Err(MetadataError::Doctype)
    ));
}

#[test]
fn lenient_end_tags_close_up_to_the_nearest_open_element() {
    let xml = "<recording><participant id='p'><name>A</nameX>B</participant><stream/></recording>";
    assert!(build_tree(xml, Mode::Strict).is_err());
    let roots = build_tree(xml, Mode::Lenient).expect("lenient");
    let root = find_root(&roots).expect("root");
    let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
    // The stray </nameX> is ignored; </participant> closes <name> too.
    assert_eq!(names, ["participant", "stream"]);
    assert_eq!(root.children[0].child_text("name").as_deref(), Some("AB"));
    assert_eq!(root.children[0].attr(&["id"]), Some("p"));
    // Unclosed elements are closed at the end of the input.
    let roots = build_tree("<recording><participant id='q'>", Mode::Lenient).expect("lenient");
    assert_eq!(roots[0].children[0].attr(&["id"]), Some("q"));
}

#[test]
fn elements_deeper_than_the_bound_are_skipped() {
    let n = MAX_DEPTH * 2;
    let xml = format!(
        "<recording>{}{}<stream/></recording>",
        "<a>".repeat(n),
        "</a>".repeat(n)
    );
    let roots = build_tree(&xml, Mode::Strict).expect("well-formed");
    let root = &roots[0];
    assert_eq!(depth(root), MAX_DEPTH);
    // Reading goes on after the skipped part.
    assert_eq!(
        root.children.last().map(|c| c.name.as_str()),
        Some("stream")
    );
}

#[test]
fn reading_stops_after_the_recording_root() {
    // Non-root elements before it are kept; junk after it is never read.
    let xml = "<foo/><x:Recording xmlns:x='u'/>\r\n--boundary--\r\n<<<&";
    let roots = build_tree(xml, Mode::Strict).expect("stops before the junk");
    assert_eq!(roots.len(), 2);
    let root = find_root(&roots).expect("root");
    assert_eq!(
        (root.name.as_str(), root.local.as_str()),
        ("recording", "Recording")
    );
    assert_eq!(root.prefix.as_deref(), Some("x"));
    assert_eq!(root.ns_decls, [("x".to_string(), "u".to_string())]);
    assert_eq!(&xml[root.span.0..root.span.1], "<x:Recording xmlns:x='u'/>");
}
