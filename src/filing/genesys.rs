//! What is Genesys's own: the parameters of its record legs (the
//! Request-URI and To of a GVP/SIP Server recording INVITE, also carried
//! whole in the Acme `apkt:request-uri` extension) and the recording id of
//! `sip:record=<id>@...`. The `X-Genesys-*` headers are read with the other
//! vendors' headers in [`super::correlation`](mod@super::correlation).

use std::collections::BTreeMap;

use super::values::{clean, params};

/// URI and To parameters of Genesys record legs, by canonical key.
const GENESYS_PARAMS: &[(&str, &str)] = &[
    ("recorddn", "recorddn"),
    ("calluuid", "calluuid"),
    ("dn", "dn"),
    ("otherdn", "otherdn"),
    ("agentid", "agentid"),
    ("connid", "connid"),
    ("ani", "ani"),
    ("dnis", "dnis"),
    ("media-id", "media_id"),
    ("datetime", "datetime"),
    ("gvp-tenant-id", "gvp_tenant_id"),
    ("sipsappname", "sipsappname"),
    ("geo-location", "geo_location"),
    ("geo_location", "geo_location"),
];

/// Takes the Genesys parameters of a record URI into `out` (first value wins).
pub fn take_genesys_params(uri: &str, out: &mut BTreeMap<String, String>) {
    let ps = params(uri);
    for (name, key) in GENESYS_PARAMS {
        if let Some((_, v)) = ps.iter().find(|(k, _)| k == name) {
            if let Some(v) = clean(v) {
                out.entry((*key).to_string()).or_insert(v);
            }
        }
    }
    // `sip:record=<id>@recorder`: the Genesys recording id.
    let user = uri
        .trim()
        .trim_start_matches('<')
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap_or("");
    if let Some(id) = user.strip_prefix("record=") {
        if let Some(v) = clean(id) {
            out.entry("genesys_record_id".into()).or_insert(v);
        }
    }
}
