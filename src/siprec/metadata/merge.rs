//! Merging a later document of a recording session into its state
//! ([`Metadata::apply`]): partial updates upserted by id, complete snapshots
//! replacing the state, session stops disassociating their participants, and
//! the [`Change`]s reported for the event log.

use super::model::{
    Change, ChangeKind, DataMode, Metadata, Participant, ParticipantSessionAssoc, Stream,
};

impl Metadata {
    /// Merge a later document of the same recording session into `self` and
    /// report what changed.
    ///
    /// * A snapshot request (`is_snapshot_request`) changes nothing.
    /// * `Complete`: `self` becomes `update` (nothing of the old state is
    ///   kept); the changes are `Snapshot` plus the differences from the old
    ///   state, so a participant absent from the snapshot is reported as left.
    /// * `Partial`: groups, sessions, participants and streams are upserted by
    ///   id (a stream with an empty id by label). Scalars present in the
    ///   update replace the old ones; absent ones stay. A participant's
    ///   `send`/`recv` are replaced only when the update carries an explicit
    ///   association for it (`has_stream_assoc`). Non-empty lists
    ///   (`sip_session_ids`, `extensions`) replace the old ones. A
    ///   `<participantsessionassoc>` for an unknown participant adds it. A new
    ///   associate-time without a disassociate-time for a participant that
    ///   had left clears its disassociate-time (it joined again). Stream ids
    ///   in send/recv that no `<stream>` defines are kept as they are.
    ///
    /// In both modes a session with a stop-time disassociates every
    /// participant still associated with it (one with no known session
    /// association counts as associated): its disassociate-time becomes the
    /// stop-time.
    pub fn apply(&mut self, update: Metadata) -> Vec<Change> {
        if update.is_snapshot_request {
            return Vec::new();
        }
        let before = self.clone();
        let snapshot = update.datamode == DataMode::Complete;
        let stops: Vec<(String, String)> = update
            .sessions
            .iter()
            .filter_map(|s| s.stop_time.clone().map(|t| (s.id.clone(), t)))
            .collect();
        if snapshot {
            *self = update;
        } else {
            self.merge_partial(update);
        }
        for (session_id, time) in &stops {
            self.close_session(session_id, time);
        }
        diff(&before, self, snapshot)
    }

    fn merge_partial(&mut self, up: Metadata) {
        for g in up.groups {
            match self.groups.iter_mut().find(|o| o.id == g.id) {
                Some(o) => {
                    replace_if_some(&mut o.associate_time, g.associate_time);
                    replace_if_some(&mut o.disassociate_time, g.disassociate_time);
                    replace_if_nonempty(&mut o.extensions, g.extensions);
                }
                None => self.groups.push(g),
            }
        }
        for s in up.sessions {
            match self.sessions.iter_mut().find(|o| o.id == s.id) {
                Some(o) => {
                    replace_if_nonempty(&mut o.sip_session_ids, s.sip_session_ids);
                    replace_if_some(&mut o.start_time, s.start_time);
                    replace_if_some(&mut o.stop_time, s.stop_time);
                    replace_if_nonempty(&mut o.extensions, s.extensions);
                }
                None => self.sessions.push(s),
            }
        }
        for s in up.streams {
            let same = |o: &&mut Stream| {
                if s.id.is_empty() {
                    o.id.is_empty() && o.label == s.label
                } else {
                    o.id == s.id
                }
            };
            match self.streams.iter_mut().find(same) {
                Some(o) => {
                    replace_if_some(&mut o.label, s.label);
                    replace_if_some(&mut o.session_id, s.session_id);
                    replace_if_some(&mut o.mode, s.mode);
                    replace_if_some(&mut o.associate_time, s.associate_time);
                    replace_if_some(&mut o.disassociate_time, s.disassociate_time);
                }
                None => self.streams.push(s),
            }
        }
        for p in up.participants {
            match self.participants.iter_mut().find(|o| o.id == p.id) {
                Some(o) => {
                    replace_if_some(&mut o.aor, p.aor);
                    replace_if_some(&mut o.name, p.name);
                    if p.has_stream_assoc {
                        o.send = p.send;
                        o.recv = p.recv;
                        o.has_stream_assoc = true;
                    }
                    update_times(
                        &mut o.associate_time,
                        &mut o.disassociate_time,
                        p.associate_time,
                        p.disassociate_time,
                    );
                    replace_if_nonempty(&mut o.extensions, p.extensions);
                }
                None => self.participants.push(p),
            }
        }
        for a in up.participant_session_assocs {
            if !a.participant_id.is_empty() {
                let p = match self
                    .participants
                    .iter()
                    .position(|p| p.id == a.participant_id)
                {
                    Some(i) => &mut self.participants[i],
                    None => {
                        self.participants.push(Participant {
                            id: a.participant_id.clone(),
                            ..Participant::default()
                        });
                        let last = self.participants.len() - 1;
                        &mut self.participants[last]
                    }
                };
                update_times(
                    &mut p.associate_time,
                    &mut p.disassociate_time,
                    a.associate_time.clone(),
                    a.disassociate_time.clone(),
                );
            }
            let same = |o: &&mut ParticipantSessionAssoc| {
                o.participant_id == a.participant_id && o.session_id == a.session_id
            };
            match self.participant_session_assocs.iter_mut().find(same) {
                Some(o) => update_times(
                    &mut o.associate_time,
                    &mut o.disassociate_time,
                    a.associate_time,
                    a.disassociate_time,
                ),
                None => self.participant_session_assocs.push(a),
            }
        }
        replace_if_nonempty(&mut self.extensions, up.extensions);
    }

    /// Session `session_id` stopped at `time`: disassociate its participants.
    fn close_session(&mut self, session_id: &str, time: &str) {
        let assocs = &mut self.participant_session_assocs;
        for p in &mut self.participants {
            if p.disassociate_time.is_some() {
                continue;
            }
            let mut known = assocs.iter().filter(|a| a.participant_id == p.id);
            let first = known.next();
            let in_session = first.is_none()
                || first
                    .into_iter()
                    .chain(known)
                    .any(|a| a.session_id == session_id);
            if in_session {
                p.disassociate_time = Some(time.to_string());
            }
        }
        for a in assocs.iter_mut() {
            if a.session_id == session_id && a.disassociate_time.is_none() {
                a.disassociate_time = Some(time.to_string());
            }
        }
    }
}

pub(super) fn replace_if_some<T>(old: &mut Option<T>, new: Option<T>) {
    if new.is_some() {
        *old = new;
    }
}

fn replace_if_nonempty<T>(old: &mut Vec<T>, new: Vec<T>) {
    if !new.is_empty() {
        *old = new;
    }
}

/// Merge association times: present values replace old ones, and a new
/// associate-time without a disassociate-time after a disassociation means
/// the element is associated again.
fn update_times(
    old_assoc: &mut Option<String>,
    old_disassoc: &mut Option<String>,
    new_assoc: Option<String>,
    new_disassoc: Option<String>,
) {
    let rejoined = new_disassoc.is_none()
        && old_disassoc.is_some()
        && new_assoc.is_some()
        && new_assoc != *old_assoc;
    replace_if_some(old_assoc, new_assoc);
    if rejoined {
        *old_disassoc = None;
    } else {
        replace_if_some(old_disassoc, new_disassoc);
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

/// The changes from `before` to `after`.
fn diff(before: &Metadata, after: &Metadata, snapshot: bool) -> Vec<Change> {
    let change =
        |kind, participant_id: Option<&str>, stream_id: Option<&str>, at: Option<&String>| Change {
            kind,
            participant_id: participant_id.map(str::to_string),
            stream_id: stream_id.map(str::to_string),
            at: at.cloned(),
        };
    let mut out = Vec::new();
    if snapshot {
        out.push(change(ChangeKind::Snapshot, None, None, None));
    }
    for s in &after.sessions {
        let was_stopped = before
            .sessions
            .iter()
            .find(|o| o.id == s.id)
            .is_some_and(|o| o.stop_time.is_some());
        if s.stop_time.is_some() && !was_stopped {
            out.push(change(
                ChangeKind::SessionStopped,
                None,
                None,
                s.stop_time.as_ref(),
            ));
        }
    }
    for s in &after.streams {
        if !s.id.is_empty() && !before.streams.iter().any(|o| o.id == s.id) {
            let kind = ChangeKind::StreamAdded;
            out.push(change(kind, None, Some(&s.id), s.associate_time.as_ref()));
        }
    }
    for p in &after.participants {
        let id = Some(p.id.as_str());
        let old = before.participants.iter().find(|o| o.id == p.id);
        let was_active = old.is_some_and(|o| o.disassociate_time.is_none());
        if !was_active && (old.is_none() || p.disassociate_time.is_none()) {
            let kind = ChangeKind::ParticipantJoined;
            out.push(change(kind, id, None, p.associate_time.as_ref()));
        }
        if old.is_some_and(|o| !same_set(&o.send, &p.send)) {
            out.push(change(ChangeKind::SendChanged, id, None, None));
        }
        if (was_active || old.is_none()) && p.disassociate_time.is_some() {
            let kind = ChangeKind::ParticipantLeft;
            out.push(change(kind, id, None, p.disassociate_time.as_ref()));
        }
    }
    if snapshot {
        for o in &before.participants {
            let gone = !after.participants.iter().any(|p| p.id == o.id);
            if gone && o.disassociate_time.is_none() {
                let kind = ChangeKind::ParticipantLeft;
                out.push(change(kind, Some(&o.id), None, None));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
