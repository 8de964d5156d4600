use super::*;
use crate::sip::message::parse;

fn ms(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

/// Anything with a sans-IO timer interface.
trait Timed {
    fn poll(&self) -> Option<Instant>;
    fn fire(&mut self, now: Instant) -> Vec<Action>;
}

macro_rules! timed {
    ($($t:ty),*) => {$(
        impl Timed for $t {
            fn poll(&self) -> Option<Instant> { self.poll_timeout() }
            fn fire(&mut self, now: Instant) -> Vec<Action> { self.handle_timeout(now) }
        }
    )*};
}
timed!(
    ServerInvite,
    ServerNonInvite,
    ClientNonInvite,
    UasTwoXxRetransmitter
);

/// Runs the timers, exactly at their deadlines, until `until` ms;
/// returns (ms since t0, action) for every action.
fn run(m: &mut impl Timed, t0: Instant, until: u64) -> Vec<(u64, Action)> {
    let mut out = Vec::new();
    let mut guard = 0;
    while let Some(at) = m.poll() {
        let offset = at.duration_since(t0).as_millis() as u64;
        if offset > until {
            break;
        }
        guard += 1;
        assert!(guard < 1000, "timer loop");
        for a in m.fire(at) {
            out.push((offset, a));
        }
    }
    out
}

fn send_times(actions: &[(u64, Action)]) -> Vec<u64> {
    actions
        .iter()
        .filter(|(_, a)| matches!(a, Action::Send(_)))
        .map(|(t, _)| *t)
        .collect()
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn msg(s: &str) -> Message {
    parse(s.as_bytes()).unwrap()
}

fn response(code: u16) -> Message {
    msg(&format!(
        "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP srs;branch=z9hG4bKc1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ))
}

const SCHEDULE: [u64; 10] = [
    500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
];

// ---- server INVITE ----

#[test]
fn server_invite_timer_g_schedule_then_timer_h() {
    let t0 = Instant::now();
    let mut t = ServerInvite::new(t0, Reliability::Unreliable, Timers::default());
    assert_eq!(t.state(), ServerInviteState::Proceeding);
    assert_eq!(t.poll_timeout(), None);
    assert_eq!(
        t.send_provisional(t0, b("100")),
        vec![Action::Send(b("100"))]
    );
    assert_eq!(
        t.send_final(t0, 486, b("486")),
        vec![Action::Send(b("486"))]
    );
    assert_eq!(t.state(), ServerInviteState::Completed);
    assert_eq!(t.poll_timeout(), Some(ms(t0, 500)));
    let acts = run(&mut t, t0, 100_000);
    assert_eq!(send_times(&acts), SCHEDULE);
    assert!(acts
        .iter()
        .filter(|(_, a)| matches!(a, Action::Send(_)))
        .all(|(_, a)| *a == Action::Send(b("486"))));
    let tail: Vec<_> = acts.iter().skip(SCHEDULE.len()).cloned().collect();
    assert_eq!(
        tail,
        vec![
            (32_000, Action::Timeout),
            (32_000, Action::Terminated(TerminationReason::Timeout))
        ]
    );
    assert_eq!(t.state(), ServerInviteState::Terminated);
    assert_eq!(t.poll_timeout(), None);
    assert!(t.on_retransmitted_request(ms(t0, 33_000)).is_empty());
}

#[test]
fn server_invite_ack_confirms_and_timer_i_terminates() {
    let t0 = Instant::now();
    let mut t = ServerInvite::new(t0, Reliability::Unreliable, Timers::default());
    t.send_final(t0, 603, b("603"));
    let acts = run(&mut t, t0, 2_000);
    assert_eq!(send_times(&acts), [500, 1500]);
    // retransmitted INVITE gets the same final
    assert_eq!(
        t.on_retransmitted_request(ms(t0, 1_800)),
        vec![Action::Send(b("603"))]
    );
    assert!(t.on_ack(ms(t0, 2_000)).is_empty());
    assert_eq!(t.state(), ServerInviteState::Confirmed);
    assert_eq!(t.poll_timeout(), Some(ms(t0, 7_000)));
    // ACK and INVITE retransmissions are absorbed
    assert!(t.on_ack(ms(t0, 2_500)).is_empty());
    assert!(t.on_retransmitted_request(ms(t0, 2_600)).is_empty());
    assert!(t.handle_timeout(ms(t0, 6_999)).is_empty());
    assert_eq!(
        t.handle_timeout(ms(t0, 7_000)),
        vec![Action::Terminated(TerminationReason::Completed)]
    );
    assert_eq!(t.state(), ServerInviteState::Terminated);
}

#[test]
fn server_invite_reliable_no_retransmit_and_zero_timer_i() {
    let t0 = Instant::now();
    let mut t = ServerInvite::new(t0, Reliability::Reliable, Timers::default());
    t.send_final(t0, 488, b("488"));
    // only Timer H runs
    assert_eq!(t.poll_timeout(), Some(ms(t0, 32_000)));
    assert_eq!(
        t.on_ack(ms(t0, 100)),
        vec![Action::Terminated(TerminationReason::Completed)]
    );
    assert_eq!(t.state(), ServerInviteState::Terminated);
    assert_eq!(t.poll_timeout(), None);

    // and without ACK: Timer H, no sends
    let mut t = ServerInvite::new(t0, Reliability::Reliable, Timers::default());
    t.send_final(t0, 488, b("488"));
    let acts = run(&mut t, t0, 100_000);
    assert_eq!(
        acts,
        vec![
            (32_000, Action::Timeout),
            (32_000, Action::Terminated(TerminationReason::Timeout))
        ]
    );
}

#[test]
fn server_invite_2xx_accepted_timer_l() {
    let t0 = Instant::now();
    let mut t = ServerInvite::new(t0, Reliability::Unreliable, Timers::default());
    t.send_provisional(t0, b("100"));
    t.send_provisional(t0, b("180"));
    // retransmission in Proceeding gets the latest 1xx
    assert_eq!(
        t.on_retransmitted_request(ms(t0, 10)),
        vec![Action::Send(b("180"))]
    );
    assert_eq!(
        t.send_final(ms(t0, 100), 200, b("200")),
        vec![Action::Send(b("200"))]
    );
    assert_eq!(t.state(), ServerInviteState::Accepted);
    // no retransmission by the transaction itself, only Timer L
    assert_eq!(t.poll_timeout(), Some(ms(t0, 32_100)));
    assert_eq!(
        t.on_retransmitted_request(ms(t0, 600)),
        vec![Action::Send(b("200"))]
    );
    assert_eq!(t.on_ack(ms(t0, 700)), vec![Action::PassToTu]);
    // late provisional / non-2xx ignored, TU 2xx passes
    assert!(t.send_provisional(ms(t0, 800), b("180")).is_empty());
    assert!(t.send_final(ms(t0, 800), 500, b("500")).is_empty());
    assert_eq!(
        t.send_final(ms(t0, 900), 200, b("200b")),
        vec![Action::Send(b("200b"))]
    );
    assert_eq!(
        t.on_retransmitted_request(ms(t0, 950)),
        vec![Action::Send(b("200b"))]
    );
    let acts = run(&mut t, t0, 100_000);
    assert_eq!(
        acts,
        vec![(32_100, Action::Terminated(TerminationReason::Completed))]
    );
}

#[test]
fn server_invite_late_timeout_sends_once() {
    let t0 = Instant::now();
    let mut t = ServerInvite::new(t0, Reliability::Unreliable, Timers::default());
    t.send_final(t0, 486, b("486"));
    // owner 200 ms late: still on schedule
    assert_eq!(t.handle_timeout(ms(t0, 700)).len(), 1);
    assert_eq!(t.poll_timeout(), Some(ms(t0, 1_500)));
    // owner very late: one send, next from now
    assert_eq!(t.handle_timeout(ms(t0, 5_000)).len(), 1);
    assert_eq!(t.poll_timeout(), Some(ms(t0, 7_000)));
    assert!(t.handle_timeout(ms(t0, 5_001)).is_empty());
}

// ---- server non-INVITE ----

#[test]
fn server_non_invite_states_and_timer_j() {
    let t0 = Instant::now();
    let mut t = ServerNonInvite::new(t0, Reliability::Unreliable, Timers::default());
    assert_eq!(t.state(), ServerNonInviteState::Trying);
    assert!(t.on_retransmitted_request(t0).is_empty());
    t.send_provisional(t0, b("100"));
    assert_eq!(t.state(), ServerNonInviteState::Proceeding);
    assert_eq!(t.on_retransmitted_request(t0), vec![Action::Send(b("100"))]);
    assert_eq!(
        t.send_final(ms(t0, 1_000), 200, b("200")),
        vec![Action::Send(b("200"))]
    );
    assert_eq!(t.state(), ServerNonInviteState::Completed);
    assert_eq!(
        t.on_retransmitted_request(ms(t0, 2_000)),
        vec![Action::Send(b("200"))]
    );
    assert!(t.send_final(ms(t0, 2_000), 500, b("500")).is_empty());
    let acts = run(&mut t, t0, 100_000);
    assert_eq!(
        acts,
        vec![(33_000, Action::Terminated(TerminationReason::Completed))]
    );
    assert!(t.on_retransmitted_request(ms(t0, 40_000)).is_empty());
}

#[test]
fn server_non_invite_reliable_terminates_on_final() {
    let t0 = Instant::now();
    let mut t = ServerNonInvite::new(t0, Reliability::Reliable, Timers::default());
    assert_eq!(
        t.send_final(t0, 481, b("481")),
        vec![
            Action::Send(b("481")),
            Action::Terminated(TerminationReason::Completed)
        ]
    );
    assert_eq!(t.state(), ServerNonInviteState::Terminated);
    assert_eq!(t.poll_timeout(), None);
}

// ---- client non-INVITE ----

#[test]
fn client_non_invite_timer_e_schedule_then_timer_f() {
    let t0 = Instant::now();
    let (mut t, first) =
        ClientNonInvite::new(t0, b("BYE"), Reliability::Unreliable, Timers::default());
    assert_eq!(first, vec![Action::Send(b("BYE"))]);
    assert_eq!(t.state(), ClientNonInviteState::Trying);
    let acts = run(&mut t, t0, 100_000);
    assert_eq!(send_times(&acts), SCHEDULE);
    assert_eq!(
        acts[SCHEDULE.len()..],
        [
            (32_000, Action::Timeout),
            (32_000, Action::Terminated(TerminationReason::Timeout))
        ]
    );
    assert_eq!(t.state(), ClientNonInviteState::Terminated);
    assert!(t.on_response(ms(t0, 33_000), response(200)).is_empty());
}

#[test]
fn client_non_invite_1xx_slows_timer_e_then_timer_k() {
    let t0 = Instant::now();
    let (mut t, _) = ClientNonInvite::new(t0, b("BYE"), Reliability::Unreliable, Timers::default());
    let acts = run(&mut t, t0, 600);
    assert_eq!(send_times(&acts), [500]);
    let r100 = response(100);
    assert_eq!(
        t.on_response(ms(t0, 600), r100.clone()),
        vec![Action::Deliver(r100)]
    );
    assert_eq!(t.state(), ClientNonInviteState::Proceeding);
    // E was due at 1500; from then on every T2
    let acts = run(&mut t, t0, 10_000);
    assert_eq!(send_times(&acts), [1_500, 5_500, 9_500]);
    let r200 = response(200);
    assert_eq!(
        t.on_response(ms(t0, 10_000), r200.clone()),
        vec![Action::Deliver(r200)]
    );
    assert_eq!(t.state(), ClientNonInviteState::Completed);
    // retransmitted final absorbed
    assert!(t.on_response(ms(t0, 11_000), response(200)).is_empty());
    assert_eq!(t.poll_timeout(), Some(ms(t0, 15_000)));
    let acts = run(&mut t, t0, 100_000);
    assert_eq!(
        acts,
        vec![(15_000, Action::Terminated(TerminationReason::Completed))]
    );
}

#[test]
fn client_non_invite_reliable() {
    let t0 = Instant::now();
    let (mut t, _) =
        ClientNonInvite::new(t0, b("UPDATE"), Reliability::Reliable, Timers::default());
    assert_eq!(t.poll_timeout(), Some(ms(t0, 32_000)));
    let r = response(200);
    assert_eq!(
        t.on_response(ms(t0, 50), r.clone()),
        vec![
            Action::Deliver(r),
            Action::Terminated(TerminationReason::Completed)
        ]
    );
    assert_eq!(t.poll_timeout(), None);

    let (mut t, _) =
        ClientNonInvite::new(t0, b("UPDATE"), Reliability::Reliable, Timers::default());
    assert_eq!(
        run(&mut t, t0, 100_000),
        vec![
            (32_000, Action::Timeout),
            (32_000, Action::Terminated(TerminationReason::Timeout))
        ]
    );
}

// ---- 2xx retransmitter ----

#[test]
fn two_xx_retransmitter_gives_up_at_64_t1() {
    let t0 = Instant::now();
    let mut r =
        UasTwoXxRetransmitter::new(t0, b("200"), Reliability::Unreliable, Timers::default());
    let acts = run(&mut r, t0, 100_000);
    assert_eq!(send_times(&acts), SCHEDULE);
    assert_eq!(
        acts[SCHEDULE.len()..],
        [
            (32_000, Action::Timeout),
            (32_000, Action::Terminated(TerminationReason::Timeout))
        ]
    );
    assert!(r.is_finished());
    assert!(r.on_ack().is_empty());
}

#[test]
fn two_xx_retransmitter_stops_on_ack() {
    let t0 = Instant::now();
    let mut r =
        UasTwoXxRetransmitter::new(t0, b("200"), Reliability::Unreliable, Timers::default());
    assert_eq!(send_times(&run(&mut r, t0, 2_000)), [500, 1_500]);
    assert_eq!(
        r.on_ack(),
        vec![Action::Terminated(TerminationReason::Completed)]
    );
    assert_eq!(r.poll_timeout(), None);
    assert!(r.handle_timeout(ms(t0, 40_000)).is_empty());
}

#[test]
fn two_xx_retransmitter_on_reliable() {
    let t0 = Instant::now();
    let mut r = UasTwoXxRetransmitter::new(t0, b("200"), Reliability::Reliable, Timers::default());
    assert_eq!(
        run(&mut r, t0, 100_000),
        vec![
            (32_000, Action::Timeout),
            (32_000, Action::Terminated(TerminationReason::Timeout))
        ]
    );
    let mut r = UasTwoXxRetransmitter::new(t0, b("200"), Reliability::Reliable, Timers::default())
        .retransmit_on_reliable(true);
    assert_eq!(send_times(&run(&mut r, t0, 100_000)), SCHEDULE);
}

// ---- keys ----

fn req(method: &str, via: &str, extra: &str) -> Message {
    msg(&format!(
        "{method} sip:srs@10.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@h>;tag=f1\r\nTo: <sip:srs@h>{extra}\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

const VIA: &str = "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-abc;rport";

#[test]
fn keys_map_ack_and_cancel_to_the_invite() {
    let invite = server_key(&req("INVITE", VIA, "")).unwrap();
    assert_eq!(
        invite,
        TxnKey::Rfc3261 {
            branch: "z9hG4bK-abc".into(),
            sent_by: "10.0.0.2:5060".into(),
            call_id: "c1".into(),
            method: Method::Invite
        }
    );
    let ack = req("ACK", VIA, ";tag=srs1");
    assert_eq!(server_key(&ack), Some(invite.clone()));
    let cancel = req("CANCEL", VIA, "");
    assert_eq!(cancelled_key(&cancel), Some(invite.clone()));
    // the CANCEL's own transaction is a different one
    assert_ne!(server_key(&cancel), Some(invite.clone()));
    assert_eq!(cancelled_key(&ack), None);
    // sent-by and branch both count
    let other_host = req("INVITE", "SIP/2.0/UDP 10.0.0.3:5060;branch=z9hG4bK-abc", "");
    assert_ne!(server_key(&other_host), Some(invite.clone()));
    let other_branch = req("INVITE", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-abd", "");
    assert_ne!(server_key(&other_branch), Some(invite.clone()));
    // a branch reused from the same address for another call is another
    // transaction (beyond §17.2.3: a retransmission keeps its Call-ID)
    let other_call = msg(&format!(
        "INVITE sip:srs@10.0.0.1 SIP/2.0\r\nVia: {VIA}\r\nFrom: <sip:a@h>;tag=f1\r\nTo: <sip:srs@h>\r\nCall-ID: c2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_ne!(server_key(&other_call), Some(invite.clone()));
    // tolerant sent-by parsing: LWS and case
    let spaced = req(
        "INVITE",
        "SIP / 2.0 / UDP  10.0.0.2:5060 ;branch=z9hG4bK-abc",
        "",
    );
    assert_eq!(server_key(&spaced), Some(invite.clone()));
    // same branch, other method: other transaction
    assert_ne!(server_key(&req("BYE", VIA, "")), Some(invite));
}

#[test]
fn keys_rfc2543_fallback() {
    let via = "SIP/2.0/UDP old.example.com;branch=1";
    let invite = server_key(&req("INVITE", via, "")).unwrap();
    assert!(matches!(invite, TxnKey::Rfc2543 { cseq: 1, .. }));
    // the ACK carries our To tag and still matches
    assert_eq!(
        server_key(&req("ACK", via, ";tag=srs1")),
        Some(invite.clone())
    );
    assert_eq!(cancelled_key(&req("CANCEL", via, "")), Some(invite.clone()));
    // no branch at all
    let nobranch = "SIP/2.0/UDP old.example.com";
    let k = server_key(&req("INVITE", nobranch, "")).unwrap();
    assert_ne!(k, invite);
    assert_eq!(server_key(&req("ACK", nobranch, ";tag=x")), Some(k));
    // other CSeq number, other transaction
    let other = msg(&format!(
        "INVITE sip:srs@10.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@h>;tag=f1\r\nTo: <sip:srs@h>\r\nCall-ID: c1\r\nCSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_ne!(server_key(&other), Some(invite));
    // non-INVITE keys keep the To tag
    let bye1 = server_key(&req("BYE", via, ";tag=a")).unwrap();
    let bye2 = server_key(&req("BYE", via, ";tag=b")).unwrap();
    assert_ne!(bye1, bye2);
}

#[test]
fn keys_need_a_request_with_via() {
    assert_eq!(server_key(&response(200)), None);
    let no_via = msg("OPTIONS sip:srs@h SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
    assert_eq!(server_key(&no_via), None);
    let bad_via = req("INVITE", "garbage;branch=z9hG4bK1", "");
    assert_eq!(server_key(&bad_via), None);
}

// ---- table ----

#[test]
fn table_routes_collects_and_forgets() {
    let t0 = Instant::now();
    let timers = Timers::default();
    let mut table = ServerTxns::new();
    let invite = req("INVITE", VIA, "");
    let key = server_key(&invite).unwrap();
    assert_eq!(table.on_request(t0, &invite), None);
    let mut txn = ServerInvite::new(t0, Reliability::Unreliable, timers);
    txn.send_final(t0, 486, b("486"));
    table.insert(t0, key.clone(), ServerTxn::Invite(txn));

    let bye = req("BYE", "SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-bye", ";tag=x");
    let bye_key = server_key(&bye).unwrap();
    let mut nt = ServerNonInvite::new(t0, Reliability::Unreliable, timers);
    nt.send_final(ms(t0, 100), 200, b("200"));
    table.insert(t0, bye_key.clone(), ServerTxn::NonInvite(nt));
    assert_eq!(table.len(), 2);

    // earliest timeout across both: Timer G
    assert_eq!(table.poll_timeout(), Some(ms(t0, 500)));
    assert_eq!(
        table.handle_timeout(ms(t0, 500)),
        vec![(key.clone(), Action::Send(b("486")))]
    );
    // retransmissions answered from the table
    assert_eq!(
        table.on_request(ms(t0, 600), &invite),
        Some(vec![Action::Send(b("486"))])
    );
    assert_eq!(
        table.on_request(ms(t0, 600), &bye),
        Some(vec![Action::Send(b("200"))])
    );
    // the ACK confirms: Timer I is now the INVITE's deadline
    let ack = req("ACK", VIA, ";tag=srs1");
    assert_eq!(table.on_request(ms(t0, 1_000), &ack), Some(vec![]));
    assert_eq!(table.poll_timeout(), Some(ms(t0, 6_000)));
    assert_eq!(
        table.handle_timeout(ms(t0, 6_000)),
        vec![(
            key.clone(),
            Action::Terminated(TerminationReason::Completed)
        )]
    );
    assert_eq!(table.len(), 1);
    // after termination the key is unknown: the request is for the TU
    assert_eq!(table.on_request(ms(t0, 7_000), &invite), None);
    assert_eq!(table.poll_timeout(), Some(ms(t0, 32_100)));
    assert_eq!(
        table.handle_timeout(ms(t0, 40_000)),
        vec![(bye_key, Action::Terminated(TerminationReason::Completed))]
    );
    assert!(table.is_empty());
    assert_eq!(table.poll_timeout(), None);
}

#[test]
fn table_collects_txns_terminated_through_get_mut() {
    let t0 = Instant::now();
    let mut table = ServerTxns::new();
    let bye = req("BYE", VIA, ";tag=x");
    let key = server_key(&bye).unwrap();
    table.insert(
        t0,
        key.clone(),
        ServerTxn::NonInvite(ServerNonInvite::new(
            t0,
            Reliability::Reliable,
            Timers::default(),
        )),
    );
    let acts = table
        .get_mut(&key)
        .map(|t| t.send_final(ms(t0, 10), 200, b("200")))
        .unwrap();
    assert_eq!(
        acts,
        vec![
            Action::Send(b("200")),
            Action::Terminated(TerminationReason::Completed)
        ]
    );
    assert!(table.get(&key).is_none());
    assert!(table.get_mut(&key).is_none());
    // once rescheduled (as the owner does after get_mut), reported as
    // due at once and collected silently
    table.reschedule(&key);
    assert_eq!(table.poll_timeout(), Some(t0));
    assert!(table.handle_timeout(ms(t0, 20)).is_empty());
    assert!(table.is_empty());
}

// ---- robustness ----

#[test]
fn odd_inputs_never_panic_or_spin() {
    let t0 = Instant::now();
    for timers in [
        Timers {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::ZERO,
        },
        Timers {
            t1: Duration::MAX,
            t2: Duration::MAX,
            t4: Duration::MAX,
        },
    ] {
        for rel in [Reliability::Unreliable, Reliability::Reliable] {
            let mut si = ServerInvite::new(t0, rel, timers);
            assert!(si.send_final(t0, 0, b("x")).is_empty());
            assert!(si.send_final(t0, 700, b("x")).is_empty());
            si.send_final(t0, 500, b("500"));
            run(&mut si, t0, 100_000);
            si.on_ack(t0);
            run(&mut si, t0, 100_000);

            let mut sn = ServerNonInvite::new(t0, rel, timers);
            sn.send_final(t0, 200, b("200"));
            run(&mut sn, t0, 100_000);

            let (mut cn, _) = ClientNonInvite::new(t0, b("BYE"), rel, timers);
            cn.on_response(t0, req("BYE", VIA, ""));
            run(&mut cn, t0, 100_000);

            let mut rt =
                UasTwoXxRetransmitter::new(t0, b("200"), rel, timers).retransmit_on_reliable(true);
            run(&mut rt, t0, 100_000);
        }
    }
    // clock going backwards is harmless
    let mut si = ServerInvite::new(t0, Reliability::Unreliable, Timers::default());
    si.send_final(ms(t0, 1_000), 486, b("486"));
    assert!(si.handle_timeout(t0).is_empty());
}
