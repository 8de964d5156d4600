//! From the element tree to the model: the RFC 7865, pre-RFC and BroadWorks
//! readings (see the module documentation of [`super`]), and vendor
//! extension data (Acme `apkt:ucid`, Sonus `callData`, AudioCodes
//! `GenesysUUID`, ...) kept raw with its leaf values.

use super::merge::replace_if_some;
use super::model::{
    CsSession, DataMode, Extension, Group, Metadata, Participant, ParticipantSessionAssoc, Stream,
};
use super::xml::{non_blank, Element, SNAPSHOT_REQUEST};

/// Children of the root that RFC 7865 defines (everything else is kept as an
/// extension).
const ROOT_KNOWN: &[&str] = &[
    "datamode",
    "group",
    "session",
    "participant",
    "stream",
    "sessionrecordingassoc",
    "participantsessionassoc",
    "participantstreamassoc",
];
/// Known children of `<group>`.
const GROUP_KNOWN: &[&str] = &["associate-time", "disassociate-time"];
/// Known children of `<session>` (RFC 7865 plus the legacy times).
const SESSION_KNOWN: &[&str] = &[
    "sipsessionid",
    "reason",
    "group-ref",
    "start-time",
    "stop-time",
    "associate-time",
    "disassociate-time",
];
/// Known children of `<participant>` (RFC 7865, legacy and BroadWorks).
const PARTICIPANT_KNOWN: &[&str] = &[
    "nameid",
    "send",
    "recv",
    "associate-time",
    "disassociate-time",
    "aor",
    "name",
];

/// `src` is the text the tree was built from (for raw extension XML).
pub(super) fn metadata_from_root(root: &Element, src: &str) -> Metadata {
    let mut md = Metadata::default();
    if root.name == SNAPSHOT_REQUEST {
        md.is_snapshot_request = true;
        return md;
    }
    // (participant id, send, recv) from <participantstreamassoc>, applied last
    // because they may come before the <participant> they refer to.
    let mut assocs: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for child in &root.children {
        match child.name.as_str() {
            "datamode" => md.datamode = datamode_from(&child.text),
            "group" => md.groups.push(group_from(child, root, src)),
            "session" => md.sessions.push(session_from(child, root, src)),
            "participant" => {
                let (p, assoc) = participant_from(child, root, src);
                merge_participant(&mut md.participants, p);
                md.participant_session_assocs.extend(assoc);
            }
            "stream" => merge_stream(&mut md.streams, stream_from(child)),
            "participantstreamassoc" => {
                if let Some(id) = child.attr(&["participant_id", "id"]) {
                    let (send, recv) = send_recv(child);
                    assocs.push((id.trim().to_string(), send, recv));
                }
            }
            "participantsessionassoc" => {
                if let Some(id) = child.attr(&["participant_id", "id"]) {
                    md.participant_session_assocs.push(ParticipantSessionAssoc {
                        participant_id: id.trim().to_string(),
                        session_id: attr_string(child, &["session_id", "session"]),
                        associate_time: child.child_text("associate-time"),
                        disassociate_time: child.child_text("disassociate-time"),
                    });
                }
            }
            _ => {
                if !ROOT_KNOWN.contains(&child.name.as_str()) {
                    md.extensions.push(extension_from(child, &[root], src));
                }
            }
        }
    }
    for (id, send, recv) in assocs {
        merge_participant(
            &mut md.participants,
            Participant {
                id,
                send,
                recv,
                has_stream_assoc: true,
                ..Participant::default()
            },
        );
    }
    // Association times onto the participants of this document.
    for a in &md.participant_session_assocs {
        if let Some(p) = md
            .participants
            .iter_mut()
            .find(|p| p.id == a.participant_id)
        {
            replace_if_some(&mut p.associate_time, a.associate_time.clone());
            replace_if_some(&mut p.disassociate_time, a.disassociate_time.clone());
        }
    }
    md
}

/// Unknown children of `el` as extensions; `scopes` are its ancestors.
fn extensions_of(el: &Element, known: &[&str], scopes: &[&Element], src: &str) -> Vec<Extension> {
    let mut scopes = scopes.to_vec();
    scopes.push(el);
    el.children
        .iter()
        .filter(|c| !known.contains(&c.name.as_str()))
        .map(|c| extension_from(c, &scopes, src))
        .collect()
}

/// Longest `Extension::xml` kept, in bytes.
const MAX_EXTENSION_XML: usize = 8 * 1024;
/// Most `(path, text)` pairs kept per extension.
const MAX_EXTENSION_VALUES: usize = 256;

fn extension_from(el: &Element, scopes: &[&Element], src: &str) -> Extension {
    let raw = src.get(el.span.0..el.span.1).unwrap_or_default();
    let xml = if !raw.is_empty() && raw.len() <= MAX_EXTENSION_XML {
        raw.to_string()
    } else {
        let mut all = String::new();
        text_content(el, &mut all);
        let mut cut = all.len().min(MAX_EXTENSION_XML);
        while !all.is_char_boundary(cut) {
            cut -= 1;
        }
        all.truncate(cut);
        all
    };
    let mut text = Vec::new();
    if el.name == "extensiondata" && !el.children.is_empty() {
        for c in &el.children {
            leaf_values(c, c.local.clone(), &mut text);
        }
    } else {
        leaf_values(el, el.local.clone(), &mut text);
    }
    Extension {
        name: el.local.clone(),
        namespace: namespace_of(el, scopes),
        xml,
        text,
    }
}

/// Concatenated text of `el` and its descendants.
fn text_content(el: &Element, out: &mut String) {
    out.push_str(&el.text);
    for c in &el.children {
        if out.len() > MAX_EXTENSION_XML {
            return;
        }
        text_content(c, out);
    }
}

/// `(path, trimmed text)` of every leaf under `el` (itself included) with
/// non-blank text; `path` is the path of `el`.
fn leaf_values(el: &Element, path: String, out: &mut Vec<(String, String)>) {
    if out.len() >= MAX_EXTENSION_VALUES {
        return;
    }
    if el.children.is_empty() {
        if let Some(t) = non_blank(&el.text) {
            out.push((path, t));
        }
        return;
    }
    for c in &el.children {
        leaf_values(c, format!("{path}/{}", c.local), out);
    }
}

/// Namespace URI of `el`: its prefix (or the default namespace) looked up in
/// its own declarations, then in those of `scopes` (outermost first).
fn namespace_of(el: &Element, scopes: &[&Element]) -> Option<String> {
    let prefix = el.prefix.as_deref().unwrap_or("");
    if prefix == "xml" {
        return Some("http://www.w3.org/XML/1998/namespace".to_string());
    }
    std::iter::once(el)
        .chain(scopes.iter().rev().copied())
        .find_map(|e| e.ns_decls.iter().rev().find(|(p, _)| p == prefix))
        .and_then(|(_, uri)| non_blank(uri))
}

fn datamode_from(text: &str) -> DataMode {
    if text.trim().eq_ignore_ascii_case("partial") {
        DataMode::Partial
    } else {
        DataMode::Complete
    }
}

fn attr_string(el: &Element, names: &[&str]) -> String {
    el.attr(names).unwrap_or_default().trim().to_string()
}

fn group_from(el: &Element, root: &Element, src: &str) -> Group {
    Group {
        id: attr_string(el, &["group_id", "id"]),
        associate_time: el.child_text("associate-time"),
        disassociate_time: el.child_text("disassociate-time"),
        extensions: extensions_of(el, GROUP_KNOWN, &[root], src),
    }
}

fn session_from(el: &Element, root: &Element, src: &str) -> CsSession {
    CsSession {
        id: attr_string(el, &["session_id", "id"]),
        sip_session_ids: el
            .children_named("sipsessionid")
            .map(|c| c.text.split_whitespace().collect::<String>())
            .filter(|s| !s.is_empty())
            .collect(),
        start_time: el.child_text("start-time"),
        stop_time: el.child_text("stop-time"),
        extensions: extensions_of(el, SESSION_KNOWN, &[root], src),
    }
}

/// The participant, and (legacy dialects) the session association given by
/// its `session` attribute.
fn participant_from(
    el: &Element,
    root: &Element,
    src: &str,
) -> (Participant, Option<ParticipantSessionAssoc>) {
    let name_ids: Vec<&Element> = el.children_named("nameid").collect();
    // RFC 7865: <nameID aor=..><name>..</name></nameID>; BroadWorks: <aor>, <name>.
    let aor = name_ids
        .iter()
        .find_map(|n| n.attr(&["aor"]).and_then(non_blank))
        .or_else(|| el.child_text("aor"));
    let name = name_ids
        .iter()
        .find_map(|n| n.child_text("name"))
        .or_else(|| el.child_text("name"));
    let (send, recv) = send_recv(el);
    let id = attr_string(el, &["participant_id", "id"]);
    let associate_time = el.child_text("associate-time");
    let disassociate_time = el.child_text("disassociate-time");
    let assoc = el
        .attr(&["session"])
        .and_then(non_blank)
        .filter(|_| !id.is_empty())
        .map(|session_id| ParticipantSessionAssoc {
            participant_id: id.clone(),
            session_id,
            associate_time: associate_time.clone(),
            disassociate_time: disassociate_time.clone(),
        });
    let participant = Participant {
        has_stream_assoc: el
            .children
            .iter()
            .any(|c| c.name == "send" || c.name == "recv"),
        id,
        aor,
        name,
        send,
        recv,
        associate_time,
        disassociate_time,
        extensions: extensions_of(el, PARTICIPANT_KNOWN, &[root], src),
    };
    (participant, assoc)
}

/// Stream ids in the `<send>` and `<recv>` children of `el`. Each holds an id
/// as text, or (BroadWorks) one or more `<id>` children.
fn send_recv(el: &Element) -> (Vec<String>, Vec<String>) {
    let ids = |name: &str| {
        let mut out: Vec<String> = Vec::new();
        for c in el.children_named(name) {
            let found: Vec<String> = if c.children.iter().any(|i| i.name == "id") {
                c.children_named("id")
                    .filter_map(|i| non_blank(&i.text))
                    .collect()
            } else {
                non_blank(&c.text).into_iter().collect()
            };
            push_unique(&mut out, found);
        }
        out
    };
    (ids("send"), ids("recv"))
}

fn push_unique(list: &mut Vec<String>, items: Vec<String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

fn stream_from(el: &Element) -> Stream {
    Stream {
        id: attr_string(el, &["stream_id", "id"]),
        label: el.child_text("label"),
        session_id: el.attr(&["session_id", "session"]).and_then(non_blank),
        mode: el.child_text("mode"),
        associate_time: el.child_text("associate-time"),
        disassociate_time: el.child_text("disassociate-time"),
    }
}

/// Add `p`, or merge it into an earlier participant with the same id.
fn merge_participant(list: &mut Vec<Participant>, p: Participant) {
    match list.iter_mut().find(|q| q.id == p.id) {
        Some(q) => {
            if q.aor.is_none() {
                q.aor = p.aor;
            }
            if q.name.is_none() {
                q.name = p.name;
            }
            push_unique(&mut q.send, p.send);
            push_unique(&mut q.recv, p.recv);
            q.has_stream_assoc |= p.has_stream_assoc;
            if q.associate_time.is_none() {
                q.associate_time = p.associate_time;
            }
            if q.disassociate_time.is_none() {
                q.disassociate_time = p.disassociate_time;
            }
            q.extensions.extend(p.extensions);
        }
        None => list.push(p),
    }
}

/// Add `s`, or fill the gaps of an earlier stream with the same non-empty id.
fn merge_stream(list: &mut Vec<Stream>, s: Stream) {
    match list.iter_mut().find(|t| !s.id.is_empty() && t.id == s.id) {
        Some(t) => {
            if t.label.is_none() {
                t.label = s.label;
            }
            if t.session_id.is_none() {
                t.session_id = s.session_id;
            }
            if t.mode.is_none() {
                t.mode = s.mode;
            }
            if t.associate_time.is_none() {
                t.associate_time = s.associate_time;
            }
            if t.disassociate_time.is_none() {
                t.disassociate_time = s.disassociate_time;
            }
        }
        None => list.push(s),
    }
}

#[cfg(test)]
mod tests;
