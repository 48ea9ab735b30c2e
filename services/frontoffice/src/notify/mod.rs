//! Notifications to citizens (docs/NOTIFICATIONS.md): when an agency's event
//! on a case this front office opened needs the citizen — documents
//! required, a fee to pay, an appointment, the document issued, the
//! application rejected — the front office, the only place that can unseal
//! the citizen's contact details, tells them once per event, by e-mail
//! ([`smtp`]) and by SMS or WhatsApp through a provider-agnostic HTTP
//! gateway ([`gateway`]), in the language they chose at the counter
//! ([`template`]), with the tracking link and never the PIN.
//!
//! How: with `--hub-url` and a channel configured, the kit follows the
//! hub's case-event feed, which gives a front office the events of the
//! cases it opened with their [`mpp_proto::v1::CitizenNotice`]
//! (`mpp_audit::case_events`); the [`reaction`] queues each in the durable
//! [`outbox`] (one entry per event and channel, so the feed's redeliveries
//! after a restart are refused there), and [`spawn_sender`] sends what is
//! due:
//!
//! - the contact details are read from the vault when the message is sent:
//!   an erased citizen's entries are dropped, counted and logged as
//!   `suppressed_erased`; a citizen who declined notifications (at the
//!   opening, or later with `AturNotifikasi`), `suppressed_opted_out`; a
//!   channel without an address, `no_contact`; the gateway gets the phone
//!   number in E.164;
//! - SMS and WhatsApp wait out quiet hours ([`QUIET_HOURS_DEFAULT`], local
//!   time of the MPP's zone); e-mail goes at any hour;
//! - a failure worth retrying is retried after [`NOTIFY_RETRY_MS_MIN`]
//!   doubling to [`NOTIFY_RETRY_MS_MAX`], until the entry is
//!   [`NOTIFY_MAX_AGE_MS`] old (`expired`); a refusal for good is `failed`;
//! - every outcome is one log line (the case as a hash, the event's log
//!   sequence and type, the channel, the outcome; never an address or a
//!   text) and a count in the outbox;
//! - an application past its SLA deadline gets one overdue notice, from a
//!   durable timer per application set by the SLA clock each case event
//!   carries ([`overdue`]);
//! - finished entries are purged after [`outbox::NOTIFY_RETENTION_MS`]
//!   (events older than that are never queued), the counts kept.
//!
//! An entry is marked done after the server or gateway accepted it; a
//! crash in between sends it again with the same `Message-ID` and
//! `Idempotency-Key`, which the receiver deduplicates (the gateway answers
//! 409, counted as `duplicate`).
//!
//! Reading the contact details to send them to the citizen is not published
//! as `personal_data_read`: nobody is handed the data, and the citizen's
//! access history would fill with the system's own sends.

pub mod gateway;
pub mod outbox;
pub mod overdue;
pub mod smtp;
pub mod template;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpp_agency_kit::case_events::CaseEventReaction;
use mpp_agency_kit::metrics::ExtraMetrics;
use mpp_agency_kit::{Clock, KitError};
use mpp_core::calendar::Zone;
use mpp_core::ids::TrackingNumber;
use mpp_core::{ReasonCode, Rejection};
use mpp_proto::v1 as pb;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use self::gateway::{GatewayAnswer, GatewayMessage, GatewayUrl};
use self::outbox::{Channel, Entry, NotifyOutbox, Outcome};
use self::smtp::{Credentials, SmtpError, SmtpSecurity, SmtpTls, SmtpUrl};
use self::template::About;
use crate::vault::{CaseRecord, PersonalData, Vault};

/// First wait before retrying a failed send.
pub const NOTIFY_RETRY_MS_MIN: i64 = 5_000;

/// Longest wait between retries.
pub const NOTIFY_RETRY_MS_MAX: i64 = 15 * 60_000;

/// An entry not sent this long after it was queued is given up
/// (`expired`): news of three days ago is no longer news.
pub const NOTIFY_MAX_AGE_MS: i64 = 3 * 86_400_000;

/// Quiet hours by default, local time of the MPP's zone: from 21:00 to
/// 07:00 no SMS or WhatsApp is sent (held until 07:00); e-mail goes.
pub const QUIET_HOURS_DEFAULT: &str = "21-7";

/// The sender looks for due entries at least this often (and whenever one
/// is queued).
pub const NOTIFY_POLL_MS: u64 = 1_000;

/// Entries one round of the sender takes.
pub const NOTIFY_BATCH_MAX: usize = 32;

/// Longest `--smtp-from`, in bytes.
pub const SMTP_FROM_BYTES_MAX: usize = 254;

/// Where overdue notices send the citizen by default: SP4N-LAPOR!, the
/// national complaint system every public service is connected to.
pub const COMPLAINT_CHANNEL_DEFAULT: &str = "SP4N-LAPOR! https://www.lapor.go.id";

/// Longest `--notify-complaint-channel`, in bytes (one line of a message).
pub const COMPLAINT_CHANNEL_BYTES_MAX: usize = 200;

/// Largest `--notify-overdue-clock-offset-ms`: a year.
pub const OVERDUE_CLOCK_OFFSET_MS_MAX: i64 = 366 * 86_400_000;

/// The notification flags of the front office.
#[derive(Debug, Clone, clap::Args)]
pub struct NotifyArgs {
    /// The SMTP relay citizens' e-mails are handed to: smtp://host[:port]
    /// (port 25 by default; the relay delivers onwards; see --smtp-tls).
    /// With --hub-url, turns on e-mail notifications (docs/NOTIFICATIONS.md).
    #[arg(long, env = "MPP_SMTP_URL", value_parser = SmtpUrl::parse)]
    pub smtp_url: Option<SmtpUrl>,

    /// STARTTLS to the relay: off (plain SMTP, a relay on the MPP's
    /// network), starttls (when the relay offers it; with
    /// --smtp-credentials-file, a relay that does not offer it fails the
    /// send: the password never goes in clear), or required (a relay that
    /// does not offer it fails the send, retried with backoff). With
    /// starttls or required, --smtp-ca-file is required.
    #[arg(long, env = "MPP_SMTP_TLS", default_value = "off", value_parser = SmtpTls::parse)]
    pub smtp_tls: SmtpTls,

    /// PEM file of the CA certificate(s) the relay's certificate is checked
    /// against after STARTTLS, for the host of --smtp-url.
    #[arg(long, env = "MPP_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,

    /// The sender address of the e-mails, e.g. noreply@mpp.bengkulukota.go.id
    /// (required with --smtp-url).
    #[arg(long, env = "MPP_SMTP_FROM", value_parser = parse_from)]
    pub smtp_from: Option<String>,

    /// File whose first line is user:password for SMTP AUTH PLAIN at the
    /// relay (optional).
    #[arg(long, env = "MPP_SMTP_CREDENTIALS_FILE")]
    pub smtp_credentials_file: Option<PathBuf>,

    /// The SMS / WhatsApp gateway's webhook: https://host[:port]/path (a
    /// provider on the internet; needs --sms-gateway-ca-file) or
    /// http://host[:port]/path (only an adapter on the MPP's own network).
    /// With --hub-url, turns on phone notifications (docs/NOTIFICATIONS.md).
    #[arg(long, env = "MPP_SMS_GATEWAY_URL", value_parser = GatewayUrl::parse)]
    pub sms_gateway_url: Option<GatewayUrl>,

    /// PEM file of the CA certificate(s) an https:// gateway's certificate
    /// is checked against, for the host of --sms-gateway-url.
    #[arg(long, env = "MPP_SMS_GATEWAY_CA_FILE")]
    pub sms_gateway_ca_file: Option<PathBuf>,

    /// File whose first line is the gateway's bearer token (required with
    /// --sms-gateway-url).
    #[arg(long, env = "MPP_SMS_GATEWAY_TOKEN_FILE")]
    pub sms_gateway_token_file: Option<PathBuf>,

    /// The channel phone notifications go by: sms or whatsapp.
    #[arg(long, env = "MPP_SMS_GATEWAY_CHANNEL", default_value = "sms", value_parser = parse_phone_channel)]
    pub sms_gateway_channel: Channel,

    /// Quiet hours of SMS and WhatsApp, local time of the MPP's zone:
    /// START-END in whole hours (e.g. 21-7), or off.
    #[arg(long, env = "MPP_NOTIFY_QUIET_HOURS", default_value = QUIET_HOURS_DEFAULT, value_parser = QuietHours::parse)]
    pub notify_quiet_hours: QuietHours,

    /// Where an overdue notice tells the citizen to complain: the MPP's
    /// complaint channel, one line (name and address).
    #[arg(long, env = "MPP_NOTIFY_COMPLAINT_CHANNEL", default_value = COMPLAINT_CHANNEL_DEFAULT,
          value_parser = parse_complaint_channel)]
    pub notify_complaint_channel: String,

    /// Drills and tests only (hidden): the overdue timers fire as if the
    /// time were this many milliseconds later (0..=a year). Nothing else is
    /// shifted.
    #[arg(long, env = "MPP_NOTIFY_OVERDUE_CLOCK_OFFSET_MS", default_value_t = 0, hide = true,
          value_parser = clap::value_parser!(i64).range(0..=OVERDUE_CLOCK_OFFSET_MS_MAX))]
    pub notify_overdue_clock_offset_ms: i64,
}

impl NotifyArgs {
    /// No channel: notifications off (the flags' defaults).
    pub fn off() -> Self {
        Self {
            smtp_url: None,
            smtp_tls: SmtpTls::Off,
            smtp_ca_file: None,
            smtp_from: None,
            smtp_credentials_file: None,
            sms_gateway_url: None,
            sms_gateway_ca_file: None,
            sms_gateway_token_file: None,
            sms_gateway_channel: Channel::Sms,
            notify_quiet_hours: QuietHours::parse(QUIET_HOURS_DEFAULT).unwrap_or(QuietHours::OFF),
            notify_complaint_channel: COMPLAINT_CHANNEL_DEFAULT.to_owned(),
            notify_overdue_clock_offset_ms: 0,
        }
    }
}

/// A rustls client configuration trusting the CA(s) in `ca`.
fn tls_client(
    ca: &std::path::Path,
    alpn: &[&[u8]],
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    mpp_edge::tls::rustls_client_config(ca, alpn).map_err(|e| e.to_string())
}

/// `--smtp-tls` and `--smtp-ca-file`, checked together.
fn smtp_security(args: &NotifyArgs) -> Result<SmtpSecurity, String> {
    match (args.smtp_tls, &args.smtp_ca_file) {
        (SmtpTls::Off, None) => Ok(SmtpSecurity::OFF),
        (SmtpTls::Off, Some(_)) => Err("--smtp-ca-file needs --smtp-tls starttls or required".into()),
        (_, None) => Err("--smtp-tls starttls or required needs --smtp-ca-file (MPP_SMTP_CA_FILE)".into()),
        (mode, Some(ca)) => Ok(SmtpSecurity { mode, config: Some(tls_client(ca, &[])?) }),
    }
}

fn parse_complaint_channel(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.len() > COMPLAINT_CHANNEL_BYTES_MAX || t.chars().any(char::is_control) {
        return Err(format!(
            "{s:?}: expected one line of at most {COMPLAINT_CHANNEL_BYTES_MAX} bytes (e.g. {COMPLAINT_CHANNEL_DEFAULT:?})"
        ));
    }
    Ok(t.to_owned())
}

fn parse_from(s: &str) -> Result<String, String> {
    let ok = s.len() <= SMTP_FROM_BYTES_MAX
        && s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\'))
        && s.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: expected an address local@domain.tld of at most {SMTP_FROM_BYTES_MAX} bytes"))
    }
}

fn parse_phone_channel(s: &str) -> Result<Channel, String> {
    match Channel::from_name(s) {
        Some(c) if c.is_phone() => Ok(c),
        _ => Err(format!("{s:?}: expected sms or whatsapp")),
    }
}

/// Hours of the day (local) when phone messages wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours(Option<(u8, u8)>);

impl QuietHours {
    /// No quiet hours.
    pub const OFF: QuietHours = QuietHours(None);

    /// Parses `START-END` (0..=23 each, different) or `off`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::OFF);
        }
        let bad = || format!("{s:?}: expected START-END in whole hours 0-23 (e.g. 21-7), or off");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (a, b) = (a.trim().parse::<u8>().map_err(|_| bad())?, b.trim().parse::<u8>().map_err(|_| bad())?);
        if a > 23 || b > 23 || a == b {
            return Err(bad());
        }
        Ok(Self(Some((a, b))))
    }

    /// When quiet hours end, if `now_ms` is within them in `zone`.
    pub fn until(self, now_ms: i64, zone: Zone) -> Option<i64> {
        let (start, end) = self.0?;
        let offset_ms = i64::from(zone.offset_minutes()) * 60_000;
        let local = now_ms + offset_ms;
        let hour = local.rem_euclid(86_400_000) / 3_600_000;
        let (start, end) = (i64::from(start), i64::from(end));
        let quiet = if start < end { hour >= start && hour < end } else { hour >= start || hour < end };
        if !quiet {
            return None;
        }
        let day_start = local - local.rem_euclid(86_400_000);
        let mut end_local = day_start + end * 3_600_000;
        if end_local <= local {
            end_local += 86_400_000;
        }
        Some(end_local - offset_ms)
    }
}

/// The wait before the attempt after `attempts` failed ones.
pub fn backoff_ms(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(20);
    (NOTIFY_RETRY_MS_MIN << doublings).min(NOTIFY_RETRY_MS_MAX)
}

/// The configured e-mail channel.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// The relay.
    pub url: SmtpUrl,
    /// STARTTLS or not.
    pub security: SmtpSecurity,
    /// The sender.
    pub from: String,
    /// AUTH PLAIN, if any.
    pub credentials: Option<Credentials>,
}

/// The configured gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The webhook.
    pub url: GatewayUrl,
    /// The TLS client configuration of an https:// webhook.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// The bearer token.
    pub token: String,
    /// `sms` or `whatsapp`.
    pub channel: Channel,
}

/// Everything the sender needs.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// E-mail, if configured.
    pub email: Option<EmailConfig>,
    /// The gateway, if configured.
    pub gateway: Option<GatewayConfig>,
    /// Quiet hours of the phone channels.
    pub quiet: QuietHours,
    /// The MPP's zone.
    pub zone: Zone,
    /// The MPP's name, first in every message.
    pub mpp_name: String,
    /// The tracking page.
    pub page: String,
    /// Where overdue notices send the citizen to complain.
    pub complaint: String,
    /// Added to the clock the overdue timers fire by (drills and tests).
    pub overdue_clock_offset_ms: i64,
}

impl NotifyConfig {
    /// The configuration of `args`, or `None` when no channel is
    /// configured.
    pub fn from_args(
        args: &NotifyArgs,
        zone: Zone,
        mpp_name: String,
        page: String,
    ) -> Result<Option<Self>, String> {
        let email = match (&args.smtp_url, &args.smtp_from) {
            (None, _) => None,
            (Some(_), None) => return Err("--smtp-url needs --smtp-from (MPP_SMTP_FROM)".into()),
            (Some(url), Some(from)) => Some(EmailConfig {
                url: url.clone(),
                security: smtp_security(args)?,
                from: from.clone(),
                credentials: args.smtp_credentials_file.as_deref().map(Credentials::from_file).transpose()?,
            }),
        };
        let gateway = match (&args.sms_gateway_url, &args.sms_gateway_token_file) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(
                    "--sms-gateway-url needs --sms-gateway-token-file (MPP_SMS_GATEWAY_TOKEN_FILE)".into()
                )
            }
            (Some(url), Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let token = text.lines().next().unwrap_or("").trim().to_owned();
                if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!("{} holds no token (one line of visible ASCII)", path.display()));
                }
                let tls = match (url.tls, &args.sms_gateway_ca_file) {
                    (true, Some(ca)) => Some(tls_client(ca, &[mpp_edge::tls::ALPN_HTTP11])?),
                    (true, None) => {
                        return Err("an https:// --sms-gateway-url needs --sms-gateway-ca-file \
                                    (MPP_SMS_GATEWAY_CA_FILE)"
                            .into())
                    }
                    (false, Some(_)) => {
                        return Err("--sms-gateway-ca-file is for an https:// --sms-gateway-url".into())
                    }
                    (false, None) => None,
                };
                Some(GatewayConfig { url: url.clone(), tls, token, channel: args.sms_gateway_channel })
            }
        };
        if email.is_none() && (args.smtp_tls != SmtpTls::Off || args.smtp_ca_file.is_some()) {
            return Err("--smtp-tls and --smtp-ca-file need --smtp-url".into());
        }
        if gateway.is_none() && args.sms_gateway_ca_file.is_some() {
            return Err("--sms-gateway-ca-file needs --sms-gateway-url".into());
        }
        if email.is_none() && gateway.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            email,
            gateway,
            quiet: args.notify_quiet_hours,
            zone,
            mpp_name,
            page,
            complaint: args.notify_complaint_channel.clone(),
            overdue_clock_offset_ms: args.notify_overdue_clock_offset_ms,
        }))
    }

    /// The channels an event is queued on.
    pub fn channels(&self) -> Vec<Channel> {
        let mut out = Vec::new();
        if self.email.is_some() {
            out.push(Channel::Email);
        }
        if let Some(g) = &self.gateway {
            out.push(g.channel);
        }
        out
    }
}

/// The front office's notifications: the outbox, the configuration, and
/// the sender's wake-up.
#[derive(Debug, Clone)]
pub struct Notifier {
    outbox: Arc<NotifyOutbox>,
    config: Arc<NotifyConfig>,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
    counts: Arc<Counts>,
}

/// What the sender did since start, for `/metrics`: outcomes by channel,
/// redeliveries refused, retries, and the entries pending after the last
/// round.
#[derive(Debug, Default)]
struct Counts {
    outcomes: [[AtomicU64; Outcome::ALL.len()]; Channel::ALL.len()],
    retries: [AtomicU64; Channel::ALL.len()],
    deduplicated: AtomicU64,
    pending: AtomicU64,
}

impl Counts {
    fn outcome(&self, channel: Channel, outcome: Outcome) {
        let (c, o) = (channel_index(channel), Outcome::ALL.iter().position(|x| *x == outcome).unwrap_or(0));
        self.outcomes[c][o].fetch_add(1, Ordering::Relaxed);
    }
}

fn channel_index(channel: Channel) -> usize {
    Channel::ALL.iter().position(|c| *c == channel).unwrap_or(0)
}

fn unavailable(e: impl std::fmt::Display) -> KitError {
    KitError::Event(Rejection::new(ReasonCode::Unavailable, format!("notification outbox: {e}")))
}

impl Notifier {
    /// Notifications from `outbox` under `config`, timed by `clock`.
    pub fn new(outbox: NotifyOutbox, config: NotifyConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            outbox: Arc::new(outbox),
            config: Arc::new(config),
            wake: Arc::default(),
            clock,
            counts: Arc::default(),
        }
    }

    /// The notification families of the front office's `/metrics`:
    /// `mpp_notifications_total{channel,outcome}` (since start),
    /// `mpp_notification_retries_total{channel}`,
    /// `mpp_notifications_deduplicated_total` (redeliveries refused) and
    /// `mpp_notifications_pending` (after the sender's last round).
    pub fn metrics(&self) -> ExtraMetrics {
        let counts = self.counts.clone();
        ExtraMetrics(Arc::new(move |out: &mut String| {
            use std::fmt::Write as _;
            let _ = write!(
                out,
                "# HELP mpp_notifications_total Notifications to citizens ended since start, by channel and outcome.\n\
                 # TYPE mpp_notifications_total counter\n"
            );
            for (c, channel) in Channel::ALL.iter().enumerate() {
                for (o, outcome) in Outcome::ALL.iter().enumerate() {
                    let n = counts.outcomes[c][o].load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "mpp_notifications_total{{channel=\"{}\",outcome=\"{}\"}} {n}",
                        channel.as_str(),
                        outcome.as_str()
                    );
                }
            }
            let _ = write!(
                out,
                "# HELP mpp_notification_retries_total Failed attempts to be retried since start, by channel.\n\
                 # TYPE mpp_notification_retries_total counter\n"
            );
            for (c, channel) in Channel::ALL.iter().enumerate() {
                let n = counts.retries[c].load(Ordering::Relaxed);
                let _ =
                    writeln!(out, "mpp_notification_retries_total{{channel=\"{}\"}} {n}", channel.as_str());
            }
            let _ = write!(
                out,
                "# HELP mpp_notifications_deduplicated_total Redelivered events refused by the notification outbox since start.\n\
                 # TYPE mpp_notifications_deduplicated_total counter\nmpp_notifications_deduplicated_total {}\n\
                 # HELP mpp_notifications_pending Notifications waiting in the outbox after the sender's last round.\n\
                 # TYPE mpp_notifications_pending gauge\nmpp_notifications_pending {}\n",
                counts.deduplicated.load(Ordering::Relaxed),
                counts.pending.load(Ordering::Relaxed),
            );
        }))
    }

    /// The outbox (counts, for tests and the operator).
    pub fn outbox(&self) -> &Arc<NotifyOutbox> {
        &self.outbox
    }

    /// The kit's reaction to a case event: set its application's overdue
    /// timer from its SLA clock ([`overdue`]), then queue it (an event with
    /// a notice only) on every configured channel, durably, then wake the
    /// sender.
    pub fn reaction(&self) -> CaseEventReaction {
        let me = self.clone();
        CaseEventReaction::new(move |_agency, event| {
            let me = me.clone();
            Box::pin(async move {
                if event.sla.is_some() {
                    let (outbox, e) = (me.outbox.clone(), event.clone());
                    let state = tokio::task::spawn_blocking(move || outbox.observe(&e))
                        .await
                        .map_err(unavailable)?
                        .map_err(unavailable)?;
                    if let Some(state) = state {
                        let at_ms = match state {
                            overdue::TimerState::Armed(at) => at,
                            _ => 0,
                        };
                        tracing::info!(
                            case = %case_hash(&event.case_id),
                            seq = event.seq,
                            event = %event.event_type,
                            state = state.as_str(),
                            at_ms,
                            "Overdue timer"
                        );
                    }
                }
                if event.notice.is_none() {
                    return Ok(());
                }
                let (outbox, channels, now) = (me.outbox.clone(), me.config.channels(), me.clock.now_ms());
                let channels_len = channels.len();
                let (seq, kind) = (event.seq, event.event_type.clone());
                let queued = tokio::task::spawn_blocking(move || outbox.enqueue(&event, &channels, now))
                    .await
                    .map_err(unavailable)?
                    .map_err(unavailable)?;
                if queued < channels_len {
                    me.counts.deduplicated.fetch_add((channels_len - queued) as u64, Ordering::Relaxed);
                }
                if queued == 0 {
                    tracing::info!(seq, event = %kind, "Notification already queued or done; redelivery refused");
                } else {
                    tracing::debug!(seq, event = %kind, queued, "Notifications queued");
                    me.wake.notify_one();
                }
                Ok(())
            })
        })
    }
}

/// The case as it appears in logs: a short keyed-less hash (the tracking
/// number is not secret, but a log of who was notified when need not name
/// it).
pub fn case_hash(case: &str) -> String {
    hex::encode(&Sha256::digest(format!("mpp-notify-case\0{case}").as_bytes())[..8])
}

/// The RFC 5322 date of `unix_ms` (UTC).
pub fn rfc5322_date(unix_ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, m, d, h, min) = template::civil(unix_ms, 0);
    let secs = unix_ms.rem_euclid(60_000) / 1000;
    let weekday = DAYS[unix_ms.div_euclid(86_400_000).rem_euclid(7) as usize];
    format!("{weekday}, {d} {} {y} {h:02}:{min:02}:{secs:02} +0000", MONTHS[(m - 1) as usize])
}

/// What one attempt came to.
#[derive(Debug)]
enum Attempt {
    Done(Outcome),
    /// Not before this time, without counting an attempt (quiet hours).
    Hold(i64),
    Retry(String),
}

/// Runs the sender until aborted (see the module docs).
pub fn spawn_sender(notifier: Notifier, vault: Vault) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = send_due(&notifier, &vault).await {
                tracing::error!(error = %e, "Notification outbox failed; retrying");
            }
            let outbox = notifier.outbox.clone();
            if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || outbox.pending_len()).await {
                notifier.counts.pending.store(n, Ordering::Relaxed);
            }
            let wait = Duration::from_millis(NOTIFY_POLL_MS);
            let _ = tokio::time::timeout(wait, notifier.wake.notified()).await;
        }
    })
}

/// Fires the overdue timers due now (plus the drill offset), queueing
/// their notices.
async fn fire_timers(n: &Notifier) -> Result<(), String> {
    let (outbox, channels, now) = (n.outbox.clone(), n.config.channels(), n.clock.now_ms());
    let timer_now = now.saturating_add(n.config.overdue_clock_offset_ms);
    let fired = tokio::task::spawn_blocking(move || outbox.fire_due(timer_now, &channels, now))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    for e in &fired {
        tracing::info!(
            case = %case_hash(&e.case_id),
            seq = e.seq,
            event = %e.event_type,
            state = "fired",
            at_ms = e.sla.as_ref().map_or(0, |c| c.overdue_at_ms),
            "Overdue timer"
        );
    }
    Ok(())
}

/// Removes the done entries past [`outbox::NOTIFY_RETENTION_MS`].
async fn purge(n: &Notifier) -> Result<(), String> {
    let (outbox, now) = (n.outbox.clone(), n.clock.now_ms());
    let purged = tokio::task::spawn_blocking(move || outbox.purge_done(now, outbox::NOTIFY_PURGE_BATCH_MAX))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if purged > 0 {
        tracing::info!(purged, "Finished notifications purged after their retention");
    }
    Ok(())
}

/// One round: the overdue timers due, then every due entry, one at a time,
/// then the finished entries past their retention.
async fn send_due(n: &Notifier, vault: &Vault) -> Result<(), String> {
    fire_timers(n).await?;
    send_entries(n, vault).await?;
    purge(n).await
}

/// Every due entry, one at a time.
async fn send_entries(n: &Notifier, vault: &Vault) -> Result<(), String> {
    loop {
        let (outbox, now) = (n.outbox.clone(), n.clock.now_ms());
        let due = tokio::task::spawn_blocking(move || outbox.due(now, NOTIFY_BATCH_MAX))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if due.is_empty() {
            return Ok(());
        }
        let mut progressed = false;
        for mut entry in due {
            let attempt = attempt(n, vault, &entry).await;
            let outbox = n.outbox.clone();
            match attempt {
                Attempt::Done(outcome) => {
                    log_outcome(&entry, outcome.as_str(), "");
                    n.counts.outcome(entry.channel, outcome);
                    let e = entry.clone();
                    let now = n.clock.now_ms();
                    tokio::task::spawn_blocking(move || outbox.finish(&e, outcome, now))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                    progressed = true;
                }
                Attempt::Hold(until) => {
                    entry.next_at_ms = until;
                    log_outcome(&entry, "held_quiet_hours", "");
                    tokio::task::spawn_blocking(move || outbox.reschedule(&entry))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                }
                Attempt::Retry(why) => {
                    entry.attempts += 1;
                    let now = n.clock.now_ms();
                    if now - entry.enqueued_at_ms >= NOTIFY_MAX_AGE_MS {
                        log_outcome(&entry, Outcome::Expired.as_str(), &why);
                        n.counts.outcome(entry.channel, Outcome::Expired);
                        tokio::task::spawn_blocking(move || outbox.finish(&entry, Outcome::Expired, now))
                            .await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| e.to_string())?;
                        progressed = true;
                        continue;
                    }
                    entry.next_at_ms = now + backoff_ms(entry.attempts);
                    log_outcome(&entry, "retry", &why);
                    n.counts.retries[channel_index(entry.channel)].fetch_add(1, Ordering::Relaxed);
                    tokio::task::spawn_blocking(move || outbox.reschedule(&entry))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        if !progressed {
            return Ok(());
        }
    }
}

/// The operator's record of what happened to `entry` (never an address or
/// a text).
fn log_outcome(entry: &Entry, outcome: &str, detail: &str) {
    tracing::info!(
        case = %case_hash(&entry.event.case_id),
        seq = entry.event.seq,
        event = %entry.event.event_type,
        channel = entry.channel.as_str(),
        outcome,
        attempts = entry.attempts,
        detail,
        "Notification"
    );
}

/// One attempt at `entry`.
async fn attempt(n: &Notifier, vault: &Vault, entry: &Entry) -> Attempt {
    let event = &entry.event;
    let Ok(case) = TrackingNumber::parse(&event.case_id) else { return Attempt::Done(Outcome::NoContact) };
    let data: PersonalData = match vault.blocking(move |v| v.case(&case)).await {
        Err(e) => return Attempt::Retry(format!("vault: {e}")),
        Ok(None) => return Attempt::Done(Outcome::NoContact),
        Ok(Some(CaseRecord::Erased(_))) => return Attempt::Done(Outcome::SuppressedErased),
        Ok(Some(CaseRecord::Sealed(key, sealed))) => {
            match sealed.open(&key, &case).and_then(|p| PersonalData::decode(&p)) {
                Ok(d) => d,
                Err(e) => return Attempt::Retry(format!("vault: {e}")),
            }
        }
    };
    if data.tanpa_notifikasi {
        return Attempt::Done(Outcome::SuppressedOptedOut);
    }
    let address = if entry.channel.is_phone() { &data.telepon } else { &data.surel };
    if address.is_empty() {
        return Attempt::Done(Outcome::NoContact);
    }
    let c = &n.config;
    if entry.channel.is_phone() {
        if let Some(until) = c.quiet.until(n.clock.now_ms(), c.zone) {
            return Attempt::Hold(until);
        }
    }
    let default_notice = pb::CitizenNotice::default();
    let about = About {
        case: &case,
        event_type: &event.event_type,
        notice: event.notice.as_ref().unwrap_or(&default_notice),
        mpp_name: &c.mpp_name,
        page: &c.page,
        zone: c.zone,
        agency: &event.agency_id,
        sla: event.sla.as_ref(),
        complaint: &c.complaint,
    };
    let Some(message) = template::render(&about, data.bahasa) else { return Attempt::Done(Outcome::Failed) };
    let key = entry.key();
    match (entry.channel, &c.email, &c.gateway) {
        (Channel::Email, Some(email), _) => {
            let helo = email.from.rsplit_once('@').map_or("localhost", |(_, d)| d);
            let id = smtp::message_id(&key, &email.from);
            let date = rfc5322_date(n.clock.now_ms());
            let mail = smtp::Mail {
                from: &email.from,
                to: address,
                message_id: &id,
                date: &date,
                subject: &message.subject,
                text: &message.text,
                language: data.bahasa.as_str(),
            };
            match smtp::send(&email.url, &email.security, helo, email.credentials.as_ref(), &mail).await {
                Ok(()) => Attempt::Done(Outcome::Sent),
                Err(SmtpError::Permanent(why)) => {
                    tracing::warn!(case = %case_hash(&event.case_id), seq = event.seq, why = %why, "SMTP refused a notification");
                    Attempt::Done(Outcome::Failed)
                }
                Err(SmtpError::Transient(why)) => Attempt::Retry(why),
            }
        }
        (channel, _, Some(g)) if channel.is_phone() => {
            // Sealed in E.164 since BukaBerkas normalises; an older sealing
            // is normalised here, and one that cannot be has no usable number.
            let Some(to) = crate::citizen::e164(address) else {
                tracing::warn!(case = %case_hash(&event.case_id), seq = event.seq, "The sealed phone number is not one a message can be sent to");
                return Attempt::Done(Outcome::NoContact);
            };
            let id = notification_id(&key);
            let m = GatewayMessage {
                id: &id,
                channel: channel.as_str(),
                to: &to,
                language: data.bahasa.as_str(),
                text: &message.text,
            };
            match gateway::post(&g.url, g.tls.as_ref(), &g.token, &m).await {
                GatewayAnswer::Accepted => Attempt::Done(Outcome::Sent),
                GatewayAnswer::Duplicate => Attempt::Done(Outcome::Duplicate),
                GatewayAnswer::Refused(status) => {
                    tracing::warn!(case = %case_hash(&event.case_id), seq = event.seq, status, "The gateway refused a notification");
                    Attempt::Done(Outcome::Failed)
                }
                GatewayAnswer::Retry(why) => Attempt::Retry(why),
            }
        }
        // A channel queued under a configuration that no longer has it.
        _ => Attempt::Done(Outcome::NoContact),
    }
}

/// The gateway id (and `Idempotency-Key`) of a notification: a hash of its
/// key, as hex.
pub fn notification_id(key: &str) -> String {
    hex::encode(&Sha256::digest(format!("mpp-notification/v1\0{key}").as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_flags_are_checked_together() {
        let dir = tempfile::tempdir().unwrap();
        let pki = mpp_edge::tls::test_pki::TestPki::generate(dir.path()).unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0k\n").unwrap();
        let config = |f: &dyn Fn(&mut NotifyArgs)| {
            let mut a = NotifyArgs::off();
            f(&mut a);
            NotifyConfig::from_args(&a, Zone::Wib, "MPP".into(), "https://mpp.example/lacak".into())
        };
        let smtp = |a: &mut NotifyArgs| {
            a.smtp_url = Some(SmtpUrl::parse("smtp://relay.example").unwrap());
            a.smtp_from = Some("noreply@mpp.example".into());
        };
        let https = |a: &mut NotifyArgs| {
            a.sms_gateway_url = Some(GatewayUrl::parse("https://sms.example/kirim").unwrap());
            a.sms_gateway_token_file = Some(token.clone());
        };
        let err = |r: Result<Option<NotifyConfig>, String>| r.err().unwrap_or_default();

        assert!(err(config(&|a| https(a))).contains("--sms-gateway-ca-file"));
        let c = config(&|a| {
            https(a);
            a.sms_gateway_ca_file = Some(pki.ca.clone());
        });
        assert!(c.unwrap().unwrap().gateway.unwrap().tls.is_some());
        assert!(err(config(&|a| {
            https(a);
            a.sms_gateway_url = Some(GatewayUrl::parse("http://10.0.0.5/kirim").unwrap());
            a.sms_gateway_ca_file = Some(pki.ca.clone());
        }))
        .contains("https://"));
        assert!(err(config(&|a| {
            https(a);
            a.sms_gateway_ca_file = Some(dir.path().join("missing.pem"));
        }))
        .contains("missing.pem"));

        assert!(err(config(&|a| {
            smtp(a);
            a.smtp_tls = SmtpTls::Required;
        }))
        .contains("--smtp-ca-file"));
        assert!(err(config(&|a| {
            smtp(a);
            a.smtp_ca_file = Some(pki.ca.clone());
        }))
        .contains("--smtp-tls"));
        let c = config(&|a| {
            smtp(a);
            a.smtp_tls = SmtpTls::Required;
            a.smtp_ca_file = Some(pki.ca.clone());
        });
        let email = c.unwrap().unwrap().email.unwrap();
        assert!(email.security.mode == SmtpTls::Required && email.security.config.is_some());
        assert!(err(config(&|a| a.smtp_tls = SmtpTls::Starttls)).contains("--smtp-url"));
    }

    #[test]
    fn backoff_doubles_from_the_minimum_to_the_maximum() {
        assert_eq!(backoff_ms(1), NOTIFY_RETRY_MS_MIN);
        assert_eq!(backoff_ms(2), 2 * NOTIFY_RETRY_MS_MIN);
        assert_eq!(backoff_ms(3), 4 * NOTIFY_RETRY_MS_MIN);
        assert_eq!(backoff_ms(60), NOTIFY_RETRY_MS_MAX);
    }

    #[test]
    fn quiet_hours_hold_phone_messages_until_morning_local_time() {
        let q = QuietHours::parse(QUIET_HOURS_DEFAULT).unwrap();
        // 2026-12-07 15:00 UTC = 22:00 WIB: quiet until 07:00 WIB = 00:00 UTC.
        let at_22 = 1_796_655_600_000;
        assert_eq!(q.until(at_22, Zone::Wib), Some(1_796_688_000_000));
        // 2026-12-07 19:00 UTC = 02:00 WIB (the 8th): the same morning.
        assert_eq!(q.until(at_22 + 4 * 3_600_000, Zone::Wib), Some(1_796_688_000_000));
        // 2026-12-07 05:00 UTC = 12:00 WIB: not quiet.
        assert_eq!(q.until(at_22 - 10 * 3_600_000, Zone::Wib), None);
        // 22:00 WIB is 23:00 WITA: still quiet, ends at 07:00 WITA.
        assert_eq!(q.until(at_22, Zone::Wita), Some(1_796_688_000_000 - 3_600_000));
        assert_eq!(QuietHours::OFF.until(at_22, Zone::Wib), None);
        let day = QuietHours::parse("1-5").unwrap();
        assert!(day.until(at_22, Zone::Wib).is_none());
        for bad in ["", "7", "7-7", "25-3", "a-b"] {
            assert!(QuietHours::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_for_mail_headers() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_796_655_600_000), "Mon, 7 Dec 2026 15:00:00 +0000");
    }

    #[test]
    fn ids_are_stable_per_event_and_channel() {
        assert_eq!(notification_id("e/sms"), notification_id("e/sms"));
        assert_ne!(notification_id("e/sms"), notification_id("e/whatsapp"));
        assert_eq!(notification_id("e/sms").len(), 32);
        assert_ne!(case_hash("1771-0000000001-5"), case_hash("1771-0000000002-3"));
    }
}
