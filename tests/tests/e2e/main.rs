//! End-to-end tests of MPP Hub against real processes: a private nats-server
//! per test, `mpp-hub serve`, and the agency services. One module per
//! concern (37):
//!
//! - `agency_faults`: NATS stopped or killed mid-traffic, and `kill -9` of an
//!   agency service with a non-empty outbox: the service keeps accepting,
//!   every answered event reaches the hub exactly once.
//! - `audit`: two hubs on one stream (one killed and restarted) hold
//!   byte-identical logs and sign equal Merkle roots; `mpp-hub audit`
//!   verify, export and rebuild agree on both.
//! - `bad_input`: every kind of bad message ends as a rejected log entry with
//!   its reason code, and ingest carries on.
//! - `big_case`: the largest legal case: growth past the case size and one
//!   agency's share refused at ingest, one agency's ninth application
//!   refused while another still files, and lookups of the case by 32
//!   concurrent clients under the hub's RSS bound.
//! - `bench_smoke`: `mpp-bench --quick` runs and writes a report that parses
//!   (no timing is asserted).
//! - `case_fence`: who may do what to a case under the registry: an
//!   agency's opening of a victim's number and of its own refused
//!   (`NOT_A_FRONT_OFFICE`), an application planted into the number the
//!   front office issues next never shown to the citizen
//!   (`HELD_APPLICATION_PREDATES_OPENING` noted on the opening), a filing
//!   held until its opening arrives shown; `mpp-hub audit case-at` (data
//!   directory and export) answers as the lookup did, and the auditors'
//!   `GetCaseAt` shows the dropped filing as `APPLICATION_STATE_DROPPED`.
//! - `checker`: the fault scenarios' checker: every event answered
//!   "accepted" is in the stopped hub's log exactly once.
//! - `citizen`: the tracking page in a real headless browser (Chromium),
//!   lookup rate limits and lockouts, identical answers for an unknown case
//!   and a wrong PIN, and live updates over a gRPC watch.
//! - `page_states`: the tracking page's states (rejected, withdrawn,
//!   appointment, collect-at, payment due) in Chromium at 1280 and 375 px,
//!   in both languages, with the MPP's profile in header and footer;
//!   screenshots in `test-artifacts/page-*.png`.
//! - `bootstrap`: `mpp-hub admin bootstrap` makes a new replica from a
//!   stopped one's store, verified against its signed checkpoint; the new
//!   hub resumes the stream after the snapshot and reaches the same head;
//!   tampered copies and a running hub's directory are refused.
//! - `cluster`: a 3-node NATS JetStream cluster from the deployment template,
//!   with `MPP_EVENTS` at replicas 3.
//! - `corpus`: the hostile-input corpus (`tests/corpus/`) against real
//!   processes, byte for byte.
//! - `corrupt_store`: a hub whose sled files no longer open rebuilds from
//!   the stream by default and serves the same head; with `fail` it refuses.
//! - `cross_agency`: the PLN/PBG journey: PLN's service learns over the
//!   hub's cross-agency feed that DPMPTSP issued the PBG and schedules the
//!   installation itself; the case's access history shows PLN's system; a
//!   participant without the grant receives nothing, one granted nothing is
//!   refused.
//! - `crash`: `kill -9` the hub many times while events flow; nothing lost,
//!   nothing applied twice, chain intact, projection = rebuild.
//! - `faults`: seeded fault scenarios under continuous traffic (hub, agency,
//!   NATS and cluster kills, a full disk — needs root —, a slow consumer).
//! - `flags`: every flag of every binary and subcommand has its `MPP_*`
//!   variable (read from each `--help`), and the one `--log-format`.
//! - `guessing`: a seeded distributed PIN-guessing attack from many IPv4
//!   addresses and IPv6 prefixes hits every guessing budget (figures
//!   printed); lockouts are shared by replicas and survive a restart.
//! - `harness`: the harness itself (nats-server start, restart, kill -9).
//! - `journey`: a case opened at the front office and filed into by
//!   DPMPTSP, PDAM and PLN: every agency's step and what the citizen must do
//!   next, visit by visit, until done.
//! - `nats_auth`: NATS with one user per agency (deploy/nats/secure.conf):
//!   a foreign publish is refused by NATS and, on an open server, rejected
//!   by the hub; an agency logged in with its NKey (`--nats-nkey-file`).
//! - `notifications`: citizens told by e-mail (a real SMTP server process)
//!   and SMS (a local HTTP gateway) once per change of their case, in
//!   their language, with the link and never the PIN; nothing for one who
//!   declined, nothing after erasure, nothing twice across a front-office
//!   `kill -9`; prints the counts sent, deduplicated and suppressed.
//! - `observability`: the Prometheus rules pass promtool's check and unit
//!   tests; the rules and the Grafana dashboard name only metrics the
//!   running binaries export.
//! - `openapi`: the HTTP contract (`/api/v1/openapi.json`): every route
//!   documented, the document valid OpenAPI 3.1, and real answers of every
//!   documented endpoint and status valid against it.
//! - `ops`: the operators' dashboard in a headless browser, its JSON twin,
//!   redrive (logged with the operator as its actor; a superseded one and
//!   an agency's own redrive headers refused); with `deploy` (the deployment files checked with PyYAML,
//!   `nats-server -t`, systemd-analyze and kubectl).
//! - `privacy`: personal data under UU 27/2022 (crypto-shredding), end to end.
//! - `probes`: the gRPC health service follows readiness through a NATS
//!   outage; gRPC reflection answers v1 and v1alpha.
//! - `registry`: the participant registry and signed envelopes: an
//!   unregistered participant's event and standard, wrong, expired and
//!   revoked keys, altered and unsigned envelopes, each logged with its
//!   reason while the victim's case does not move; a log from before the
//!   registry keeps its verdicts.
//! - `scale_out`: two hub replicas on a 3-node cluster hold the same log.
//! - `slow_clients`: slow-client attacks (≥ 500 connections each: TLS
//!   handshakes never completed, heads and bodies trickled, no HTTP/2
//!   preface, watches never read) against the hub and an agency service
//!   while a well-behaved client's lookups stay fast and memory bounded.
//! - `standards_flood`: standards from an unregistered agency and outside
//!   a registration refused with their codes, a registered service's
//!   successive versions accepted with one standard held in memory
//!   (`mpp_hub_standards_in_memory`), a stale version refused, the
//!   citizen's view unchanged.
//! - `spine`: 1,000 events through the Dukcapil service → NATS → hub → lookup.
//! - `transparency`: the hub's checkpoint as a C2SP signed note, at
//!   `/checkpoint` and in the audit API, checked by an independent verifier.
//! - `tls`: the real binaries over TLS, agency to lookup.
//! - `witness`: witnesses cosign a hub's checkpoints across restarts and
//!   `kill -9`, a quorum verifies, a restored hub's rollback and split view
//!   are refused with evidence, and a receipt is checked in the browser.
//! - `verdicts`: the hub's verdicts back to the agency service
//!   (`GetEventStatus`, `WatchVerdicts`) across a hub restart and an agency
//!   `kill -9`: accepted, rejected and duplicate, none missed or twice.
//! - `traces`: an agency call's W3C trace id followed to the hub's log line
//!   for each of its events.
//! - `walk_in`: an agency's walk-in citizen under the registry: the front
//!   office opens the case (`BukaBerkasInstansi`), the agency files into it
//!   and hands back the PIN the citizen looks it up with; the RPC refused
//!   without its scope, an agency without a front office refusing the
//!   walk-in (`FRONT_OFFICE_NOT_CONFIGURED`).
//!
//! Build the binaries first: `cargo build --workspace --bins` (tests/run-all.sh).

mod agency_faults;
mod audit;
mod bad_input;
mod bench_smoke;
mod big_case;
mod bootstrap;
mod case_fence;
mod checker;
mod citizen;
mod cluster;
mod corpus;
mod corrupt_store;
mod crash;
mod cross_agency;
mod faults;
mod flags;
mod guessing;
mod harness;
mod journey;
mod nats_auth;
mod notifications;
mod observability;
mod openapi;
mod ops;
mod page_states;
mod privacy;
mod probes;
mod registry;
mod scale_out;
mod slow_clients;
mod spine;
mod standards_flood;
mod tls;
mod traces;
mod transparency;
mod verdicts;
mod walk_in;
mod witness;
