//! The outbound guard: where a tenant-supplied URL or host may make this server connect.
//!
//! Every destination a tenant defines (webhooks now; Slack, SMTP and later kinds through the
//! same guard) is checked twice: when it is defined (the API answers 400 naming the URL and the
//! reason) and again at every delivery (the delivery goes dead with the reason). A target is
//! refused when it is not `http(s)` (or an SMTP host, `smtp://host:port`), carries credentials in the URL, names a cloud metadata
//! service, or when **any** address it resolves to is loopback, private (RFC 1918, fc00::/7),
//! link-local, shared (CGNAT, 100.64/10), multicast, broadcast, unspecified, documentation or
//! otherwise reserved — also when such an IPv4 address hides inside an IPv6 one (IPv4-mapped,
//! IPv4-compatible, NAT64, 6to4). Numeric shorthands (`127.1`, `2130706433`, `0x7f.0.0.1`,
//! `0177.0.0.1`) are normalised by the URL parser before the check, and the request is built from
//! that same parsed URL, so the check and the connection cannot read the host differently.
//!
//! A name is resolved once per connection, by the HTTP client's own resolver
//! ([`OutboundGuard::client_builder`]), which applies the guard to the answer and hands the
//! client only checked addresses: a name that re-resolves to an internal address between the
//! check and the connection (DNS rebinding) is refused, not connected to. IP literals never
//! reach a resolver, so [`OutboundGuard::check_url`] checks them before a request is made.
//! Redirects are never followed and proxies from the environment are not used (a proxy would
//! resolve and connect on its own).
//!
//! Operators who deliver inside their own network list the networks in an allow-list
//! ([`OutboundPolicy::allow_private_networks`]); it is empty by default. Metadata services and
//! this server's own endpoints stay refused even when the allow-list covers them.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;

/// Names of cloud metadata services, refused before any resolution (lowercase, no final dot).
const METADATA_NAMES: [&str; 6] = [
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
];

/// What an address is, when it is one a tenant's destination may not reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// `0.0.0.0/8`, `::` — "this host".
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), unique-local `fc00::/7`, local-use NAT64.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// The carrier-grade NAT range `100.64/10` (RFC 6598).
    SharedAddressSpace,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// Everything else not globally routable: `240/4`, benchmarking, IETF protocol ranges,
    /// Teredo, IPv6 outside `2000::/3`.
    Reserved,
    /// A cloud metadata service (`169.254.169.254`, `fd00:ec2::254`, Azure's `168.63.129.16`).
    Metadata,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "an unspecified (this-host) address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private-network address",
            Self::LinkLocal => "a link-local address",
            Self::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address",
            Self::Reserved => "a reserved address",
            Self::Metadata => "a cloud metadata service",
        })
    }
}

/// IPv4 ranges a destination may not reach, most specific first.
const V4_RANGES: [(Ipv4Addr, u8, AddressClass); 18] = [
    (
        Ipv4Addr::new(169, 254, 169, 254),
        32,
        AddressClass::Metadata,
    ),
    (Ipv4Addr::new(168, 63, 129, 16), 32, AddressClass::Metadata),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        AddressClass::Broadcast,
    ),
    (Ipv4Addr::new(0, 0, 0, 0), 8, AddressClass::Unspecified),
    (Ipv4Addr::new(10, 0, 0, 0), 8, AddressClass::Private),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        AddressClass::SharedAddressSpace,
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, AddressClass::Loopback),
    (Ipv4Addr::new(169, 254, 0, 0), 16, AddressClass::LinkLocal),
    (Ipv4Addr::new(172, 16, 0, 0), 12, AddressClass::Private),
    (Ipv4Addr::new(192, 0, 0, 0), 24, AddressClass::Reserved),
    (Ipv4Addr::new(192, 0, 2, 0), 24, AddressClass::Documentation),
    (Ipv4Addr::new(192, 88, 99, 0), 24, AddressClass::Reserved),
    (Ipv4Addr::new(192, 168, 0, 0), 16, AddressClass::Private),
    (Ipv4Addr::new(198, 18, 0, 0), 15, AddressClass::Reserved),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        AddressClass::Documentation,
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        AddressClass::Documentation,
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, AddressClass::Multicast),
    (Ipv4Addr::new(240, 0, 0, 0), 4, AddressClass::Reserved),
];

/// IPv6 ranges a destination may not reach (besides everything outside `2000::/3`), most
/// specific first. The forms that embed an IPv4 address are handled in [`classify_v6`].
const V6_RANGES: [(Ipv6Addr, u8, AddressClass); 8] = [
    (
        Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254),
        128,
        AddressClass::Metadata,
    ),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        128,
        AddressClass::Unspecified,
    ),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1),
        128,
        AddressClass::Loopback,
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        AddressClass::Private,
    ),
    (
        Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0),
        32,
        AddressClass::Documentation,
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        AddressClass::Documentation,
    ),
    // IETF protocol assignments, Teredo (whose client address is obfuscated), benchmarking.
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        AddressClass::Reserved,
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        AddressClass::Private,
    ),
];

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// The IPv4 address an IPv6 one carries inside it, and the form's name: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated), NAT64 (`64:ff9b::a.b.c.d`)
/// or 6to4 (`2002:aabb:ccdd::/48`).
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some((v4, "IPv4-mapped"))
    } else if bits >> 32 == 0 && bits > 1 {
        Some((low, "IPv4-compatible"))
    } else if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        Some((low, "NAT64"))
    } else if ip.segments()[0] == 0x2002 {
        let [_, high, low16, ..] = ip.segments();
        Some((
            Ipv4Addr::from((u32::from(high) << 16) | u32::from(low16)),
            "6to4",
        ))
    } else {
        None
    }
}

/// Why an IPv4 address is refused, or `None` for a public one.
fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    V4_RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, class)| *class)
}

/// Why an IPv6 address is refused (with the IPv4 address it embeds, when that is the reason),
/// or `None` for a public one.
fn classify_v6(ip: Ipv6Addr) -> Option<(AddressClass, Option<Ipv4Addr>)> {
    if let Some((_, _, class)) = V6_RANGES
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
    {
        return Some((*class, None));
    }
    if let Some((v4, form)) = embedded_ipv4(ip) {
        return match classify_v4(v4) {
            Some(class) => Some((class, Some(v4))),
            // Nothing routes the deprecated IPv4-compatible form; the other forms reach `v4`.
            None if form == "IPv4-compatible" => Some((AddressClass::Reserved, None)),
            None => None,
        };
    }
    if ip.segments()[0] & 0xff00 == 0xff00 {
        return Some((AddressClass::Multicast, None));
    }
    if ip.segments()[0] & 0xffc0 == 0xfe80 {
        return Some((AddressClass::LinkLocal, None));
    }
    // Only 2000::/3 is global unicast.
    if ip.segments()[0] & 0xe000 != 0x2000 {
        return Some((AddressClass::Reserved, None));
    }
    None
}

/// Why `ip` is not a public address (and the IPv4 address inside it that is the reason), or
/// `None` when it is one. The allow-list is not consulted: see [`OutboundGuard::check_ip`].
pub fn classify(ip: IpAddr) -> Option<(AddressClass, Option<Ipv4Addr>)> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(|class| (class, None)),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Why a target is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The scheme is not `http`, `https`, `smtp` or `smtps`.
    Scheme(String),
    /// `user:password@` in the URL: credentials go in headers, and the form hides the host.
    Credentials,
    /// No host to connect to.
    NoHost,
    /// A cloud metadata service, by name.
    MetadataName(String),
    /// An address literal in the URL (shown: the tenant wrote it).
    Address {
        /// The address.
        ip: IpAddr,
        /// What it is.
        class: AddressClass,
        /// The IPv4 address inside an IPv6 one that is the reason.
        embedded: Option<Ipv4Addr>,
    },
    /// A name that resolves to a refused address. The address is left out of the message, so
    /// the refusal does not tell a tenant how internal names resolve (the server log has it).
    Resolves {
        /// What the address is.
        class: AddressClass,
    },
    /// This server's own API or pgwire endpoint.
    OwnEndpoint,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme(scheme) => {
                write!(f, "scheme '{scheme}' is not http, https, smtp or smtps")
            }
            Self::Credentials => {
                f.write_str("credentials in the URL are not accepted; send them in headers instead")
            }
            Self::NoHost => f.write_str("the URL has no host"),
            Self::MetadataName(name) => write!(f, "{name} is a cloud metadata service"),
            Self::Address {
                ip,
                class,
                embedded: Some(v4),
            } => write!(f, "{ip} embeds {v4}, {class}"),
            Self::Address { ip, class, .. } => write!(f, "{ip} is {class}"),
            Self::Resolves { class } => write!(f, "the host resolves to {class}"),
            Self::OwnEndpoint => f.write_str("it is this server's own endpoint"),
        }
    }
}

impl Refusal {
    /// The same refusal as a name's resolution shows it: without the address.
    fn hiding_address(self) -> Self {
        match self {
            Self::Address { class, .. } => Self::Resolves { class },
            other => other,
        }
    }
}

/// Errors of the outbound guard.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The target may not be connected to; retrying cannot change that.
    #[error("'{url}' is refused: {reason}")]
    Refused {
        /// The URL (or host) as the tenant wrote it.
        url: String,
        /// Why.
        reason: Refusal,
    },
    /// The URL does not parse.
    #[error("'{url}' is not a valid URL: {reason}")]
    InvalidUrl {
        /// The URL as written.
        url: String,
        /// What the parser found.
        reason: String,
    },
    /// The host's name did not resolve (now); the delivery may be retried.
    #[error("could not resolve '{host}'")]
    Unresolved {
        /// The host name.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// An allow-list entry is not a CIDR network (`10.0.0.0/8`) or an address.
    #[error("'{entry}' is not a network like 10.0.0.0/8 or fd00::/8, nor an address")]
    InvalidNetwork {
        /// The entry as written.
        entry: String,
    },
}

impl OutboundError {
    /// Whether the target is refused for good (as opposed to not resolving right now).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. } | Self::InvalidUrl { .. })
    }
}

/// The operator's exceptions to the guard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Networks destinations may reach although they are not public (empty by default):
    /// for operators who deliver inside their own network. Metadata services stay refused.
    pub allow_private_networks: Vec<IpNet>,
    /// This server's own listening addresses (API, pgwire), refused even when allowed.
    pub own_endpoints: Vec<SocketAddr>,
}

impl OutboundPolicy {
    /// Parses allow-list entries: CIDR networks (`10.0.0.0/8`, `fd00::/8`) or single addresses.
    pub fn allowing(entries: &[String]) -> Result<Self, OutboundError> {
        let allow_private_networks = entries
            .iter()
            .map(|entry| {
                let text = entry.trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| OutboundError::InvalidNetwork {
                        entry: entry.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            allow_private_networks,
            own_endpoints: Vec::new(),
        })
    }

    fn allows(&self, ip: IpAddr) -> bool {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(|(v4, _)| IpAddr::V4(v4)),
            IpAddr::V4(_) => None,
        };
        self.allow_private_networks
            .iter()
            .any(|net| net.contains(&ip) || embedded.is_some_and(|v4| net.contains(&v4)))
    }

    fn is_own(&self, ip: IpAddr, port: Option<u16>) -> bool {
        let Some(port) = port else { return false };
        let ip = ip.to_canonical();
        self.own_endpoints.iter().any(|own| {
            own.port() == port
                && (own.ip().to_canonical() == ip
                    || (own.ip().is_unspecified() && ip.is_loopback()))
        })
    }
}

/// Resolves host names for the guard. The system's resolver in production
/// ([`SystemResolver`]); a test may answer from a table, and the guard applies to its answers
/// exactly as to the system's.
pub trait HostResolver: Send + Sync + fmt::Debug + 'static {
    /// Every address `host` resolves to.
    fn lookup<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;
}

/// The operating system's resolver (`getaddrinfo`, on a blocking thread).
#[derive(Debug, Default)]
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// The guard: checks URLs, resolves names to checked addresses, and builds HTTP clients that
/// connect only to those. Cheap to clone.
#[derive(Clone, Debug)]
pub struct OutboundGuard {
    policy: Arc<OutboundPolicy>,
    resolver: Arc<dyn HostResolver>,
}

impl Default for OutboundGuard {
    /// No exceptions: only public addresses.
    fn default() -> Self {
        Self::new(OutboundPolicy::default())
    }
}

/// A host name as compared: lowercase, without the final dot.
fn normal_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `localhost` and its subdomains are loopback without asking DNS (RFC 6761).
fn is_localhost(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

/// A URL's host: an address literal (`[…]` stripped) or a name.
enum Host<'a> {
    Literal(IpAddr),
    Name(&'a str),
}

/// The URL parser has already turned numeric IPv4 shorthands into dotted quads, so a literal
/// parses here exactly when the parser read the host as an address.
fn literal_or_name(host: &str) -> Host<'_> {
    match host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
    {
        Ok(ip) => Host::Literal(ip),
        Err(_) => Host::Name(host),
    }
}

const LOCALHOST: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

impl OutboundGuard {
    /// A guard with `policy`'s exceptions, resolving with the system's resolver.
    pub fn new(policy: OutboundPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
            resolver: Arc::new(SystemResolver),
        }
    }

    /// The same guard resolving names with `resolver` (tests: names that resolve to chosen
    /// addresses, or differently from one call to the next).
    pub fn with_resolver(self, resolver: Arc<dyn HostResolver>) -> Self {
        Self { resolver, ..self }
    }

    /// Whether the allow-list lets anything non-public through.
    pub fn allows_private_networks(&self) -> bool {
        !self.policy.allow_private_networks.is_empty()
    }

    /// Checks one address (and `port`, when known, against this server's own endpoints).
    pub fn check_ip(&self, ip: IpAddr, port: Option<u16>) -> Result<(), Refusal> {
        if self.policy.is_own(ip, port) {
            return Err(Refusal::OwnEndpoint);
        }
        match classify(ip) {
            None => Ok(()),
            Some((class, _)) if class != AddressClass::Metadata && self.policy.allows(ip) => Ok(()),
            Some((class, embedded)) => Err(Refusal::Address {
                ip,
                class,
                embedded,
            }),
        }
    }

    /// Checks what can be checked without resolving: the URL parses, is `http(s)` (or names an
    /// SMTP host: `smtp://host:port`, `smtps://host:port`), has a host
    /// and no credentials; an address literal (after the parser's normalisation of numeric
    /// shorthands) is allowed; a name is not a metadata service, and `localhost` is treated as
    /// the loopback address it is. Returns the parsed URL, which is what must be requested.
    pub fn check_url(&self, url: &str) -> Result<Url, OutboundError> {
        let refused = |reason| OutboundError::Refused {
            url: url.to_owned(),
            reason,
        };
        let invalid = |reason: String| OutboundError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = Url::parse(url.trim()).map_err(|e| invalid(e.to_string()))?;
        let checked = match host_url(url, &parsed) {
            Some(checked) => checked.map_err(invalid)?,
            None => return Err(refused(Refusal::Scheme(parsed.scheme().to_owned()))),
        };
        let port = parsed.port().or(checked.port_or_known_default());
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refused(Refusal::Credentials));
        }
        match checked.host_str().map(literal_or_name) {
            None => return Err(refused(Refusal::NoHost)),
            Some(Host::Literal(ip)) => self.check_ip(ip, port).map_err(refused)?,
            Some(Host::Name(name)) => self.check_name(name, port).map_err(refused)?,
        }
        Ok(parsed)
    }

    /// The checks on a name that need no resolution.
    fn check_name(&self, name: &str, port: Option<u16>) -> Result<(), Refusal> {
        let name = normal_name(name);
        if name.is_empty() {
            return Err(Refusal::NoHost);
        }
        if METADATA_NAMES.contains(&name.as_str()) {
            return Err(Refusal::MetadataName(name));
        }
        if is_localhost(&name) {
            // Whichever loopback address the allow-list names will do.
            let refusals: Vec<Refusal> = LOCALHOST
                .iter()
                .filter_map(|ip| self.check_ip(*ip, port).err())
                .collect();
            if refusals.len() == LOCALHOST.len() {
                return Err(refusals[0].clone().hiding_address());
            }
        }
        Ok(())
    }

    /// Resolves `host` and checks every address it resolves to: one refused address refuses
    /// the host (a client may pick any of them). Returns the addresses, to connect to as they
    /// are.
    pub async fn resolve(
        &self,
        host: &str,
        port: Option<u16>,
    ) -> Result<Vec<IpAddr>, OutboundError> {
        let refused = |reason| OutboundError::Refused {
            url: host.to_owned(),
            reason,
        };
        if let Host::Literal(ip) = literal_or_name(host) {
            self.check_ip(ip, port).map_err(refused)?;
            return Ok(vec![ip]);
        }
        self.check_name(host, port).map_err(refused)?;
        let name = normal_name(host);
        let addrs = if is_localhost(&name) {
            LOCALHOST
                .into_iter()
                .filter(|ip| self.check_ip(*ip, port).is_ok())
                .collect()
        } else {
            self.resolver
                .lookup(&name)
                .await
                .map_err(|source| OutboundError::Unresolved {
                    host: host.to_owned(),
                    source,
                })?
        };
        if addrs.is_empty() {
            return Err(OutboundError::Unresolved {
                host: host.to_owned(),
                source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
            });
        }
        for ip in &addrs {
            if let Err(reason) = self.check_ip(*ip, port) {
                tracing::debug!(host, %ip, %reason, "outbound guard refused a resolved address");
                return Err(refused(reason.hiding_address()));
            }
        }
        Ok(addrs)
    }

    /// [`OutboundGuard::check_url`], then the host resolved and every address checked: the
    /// whole check a destination gets when it is defined. [`OutboundError::Unresolved`] when the
    /// name does not resolve now (each delivery checks again).
    pub async fn check(&self, url: &str) -> Result<Url, OutboundError> {
        let parsed = self.check_url(url)?;
        let checked = match host_url(url, &parsed) {
            Some(Ok(checked)) => checked,
            _ => parsed.clone(),
        };
        let port = parsed.port().or(checked.port_or_known_default());
        if let Some(Host::Name(name)) = checked.host_str().map(literal_or_name) {
            self.resolve(name, port).await.map_err(|e| match e {
                OutboundError::Refused { reason, .. } => OutboundError::Refused {
                    url: url.to_owned(),
                    reason,
                },
                other => other,
            })?;
        }
        Ok(parsed)
    }

    /// An HTTP client builder ([`crate::http::client_builder`]) that resolves names through
    /// this guard — connecting only to checked addresses — never follows redirects and uses no
    /// proxy. Requests must still go through [`OutboundGuard::check_url`] first: address
    /// literals are not resolved, so only that check sees them.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        crate::http::client_builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver(self.clone())))
    }
}

/// The URL whose host and port the guard checks: `parsed` itself for `http(s)`, the same
/// authority read as an http URL's for an SMTP host (`smtp://host:port`; only host and port are
/// used), `None` for any other scheme. The URL standard reads the host of a scheme it does not
/// know as opaque text, without normalising numeric shorthands (`127.1`), so an SMTP host is
/// checked as the connection will read it.
fn host_url(url: &str, parsed: &Url) -> Option<Result<Url, String>> {
    match parsed.scheme() {
        "http" | "https" => Some(Ok(parsed.clone())),
        "smtp" | "smtps" => {
            let rest = &url.trim()[parsed.scheme().len()..];
            Some(Url::parse(&format!("http{rest}")).map_err(|e| e.to_string()))
        }
        _ => None,
    }
}

/// The guard as the HTTP client's resolver.
struct GuardedResolver(OutboundGuard);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The port is the URL's (reqwest replaces port 0); own endpoints were checked with
            // it by check_url for literals and `localhost`.
            let addrs = guard.resolve(&host, None).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The guard's refusal somewhere in `error`'s sources (an HTTP client's error whose resolver
/// refused the host), if there is one.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a OutboundError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<OutboundError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// A resolver answering from a table; each name's answers are used in turn, the last
    /// repeating (a name that "rebinds").
    #[derive(Debug, Default)]
    struct Table(Mutex<HashMap<String, Vec<Vec<IpAddr>>>>);

    impl Table {
        fn with(entries: &[(&str, &[&[&str]])]) -> Arc<Self> {
            let map = entries
                .iter()
                .map(|(name, answers)| {
                    let answers = answers
                        .iter()
                        .map(|ips| ips.iter().map(|ip| ip.parse().expect("ip")).collect())
                        .collect();
                    (name.to_string(), answers)
                })
                .collect();
            Arc::new(Self(Mutex::new(map)))
        }
    }

    impl HostResolver for Table {
        fn lookup<'a>(
            &'a self,
            host: &'a str,
        ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>> {
            let mut map = self.0.lock().expect("lock");
            let answer = match map.get_mut(host) {
                Some(answers) if answers.len() > 1 => Ok(answers.remove(0)),
                Some(answers) => Ok(answers[0].clone()),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
            };
            Box::pin(async move { answer })
        }
    }

    fn refusal(guard: &OutboundGuard, url: &str) -> Option<Refusal> {
        match guard.check_url(url) {
            Err(OutboundError::Refused { reason, .. }) => Some(reason),
            Err(other) => panic!("{url}: {other}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn refuses_every_internal_form_of_an_address() {
        let guard = OutboundGuard::default();
        use AddressClass::*;
        for (url, class) in [
            ("http://127.0.0.1/", Loopback),
            ("http://127.0.0.1:8080/v1/rules", Loopback),
            ("http://127.1/", Loopback),
            ("http://2130706433/", Loopback),
            ("http://0x7f.0.0.1/", Loopback),
            ("http://0x7f000001/", Loopback),
            ("http://0177.0.0.1/", Loopback),
            ("http://017700000001/", Loopback),
            ("http://127.0.0.1./", Loopback),
            ("http://0.0.0.0/", Unspecified),
            ("http://0/", Unspecified),
            ("http://[::]/", Unspecified),
            ("http://[::1]/", Loopback),
            ("http://[0:0:0:0:0:0:0:1]/", Loopback),
            ("http://[::ffff:127.0.0.1]/", Loopback),
            ("http://[::ffff:7f00:1]/", Loopback),
            ("http://[::127.0.0.1]/", Loopback),
            ("http://[64:ff9b::127.0.0.1]/", Loopback),
            ("http://[64:ff9b::a9fe:a9fe]/", Metadata),
            ("http://[2002:7f00:1::]/", Loopback),
            ("http://[2002:a00:1::1]/", Private),
            ("http://169.254.169.254/latest/meta-data/", Metadata),
            ("http://2852039166/", Metadata),
            ("http://[::ffff:169.254.169.254]/", Metadata),
            ("http://[fd00:ec2::254]/", Metadata),
            ("http://168.63.129.16/", Metadata),
            ("http://169.254.1.1/", LinkLocal),
            ("http://[fe80::1]/", LinkLocal),
            ("http://10.0.0.1/", Private),
            ("http://172.16.5.4/", Private),
            ("http://172.31.255.255/", Private),
            ("http://192.168.0.1/", Private),
            ("http://[fd12:3456::1]/", Private),
            ("http://[fc00::1]/", Private),
            ("http://[64:ff9b:1::a00:1]/", Private),
            ("http://100.64.0.1/", SharedAddressSpace),
            ("http://100.127.255.254/", SharedAddressSpace),
            ("http://224.0.0.1/", Multicast),
            ("http://239.255.255.250/", Multicast),
            ("http://[ff02::1]/", Multicast),
            ("http://255.255.255.255/", Broadcast),
            ("http://192.0.2.1/", Documentation),
            ("http://198.51.100.7/", Documentation),
            ("http://203.0.113.9/", Documentation),
            ("http://[2001:db8::1]/", Documentation),
            ("http://[3fff::1]/", Documentation),
            ("http://240.0.0.1/", Reserved),
            ("http://198.18.0.1/", Reserved),
            ("http://192.0.0.8/", Reserved),
            ("http://[2001::1]/", Reserved),
            ("http://[100::1]/", Reserved),
            ("http://[::8.8.8.8]/", Reserved),
            ("http://[fec0::1]/", Reserved),
        ] {
            match refusal(&guard, url) {
                Some(Refusal::Address { class: got, .. }) => assert_eq!(got, class, "{url}"),
                other => panic!("{url}: expected {class:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn allows_public_addresses_in_every_form() {
        let guard = OutboundGuard::default();
        for url in [
            "https://93.184.216.34/hook",
            "http://8.8.8.8:8080/",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
            "https://[2001:4860:4860::8888]/",
            "http://[::ffff:93.184.216.34]/",
            "http://[64:ff9b::5db8:d822]/",
            "http://[2002:5db8:d822::1]/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://169.255.0.1/",
            "https://hooks.example.com/x",
        ] {
            assert_eq!(refusal(&guard, url), None, "{url}");
        }
    }

    #[test]
    fn refuses_schemes_credentials_and_metadata_names() {
        let guard = OutboundGuard::default();
        for url in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "gopher://127.0.0.1/",
        ] {
            assert!(
                matches!(refusal(&guard, url), Some(Refusal::Scheme(_))),
                "{url}"
            );
        }
        for url in [
            "http://user:pass@example.com/",
            "http://example.com@127.0.0.1/",
            "http://user@example.com/",
        ] {
            assert_eq!(refusal(&guard, url), Some(Refusal::Credentials), "{url}");
        }
        for url in [
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./",
            "http://metadata/",
        ] {
            assert!(
                matches!(refusal(&guard, url), Some(Refusal::MetadataName(_))),
                "{url}"
            );
        }
        for url in [
            "http://localhost:9/",
            "http://LOCALHOST./",
            "http://api.localhost/",
        ] {
            assert_eq!(
                refusal(&guard, url),
                Some(Refusal::Resolves {
                    class: AddressClass::Loopback
                }),
                "{url}"
            );
        }
        assert!(matches!(
            guard.check_url("not a url"),
            Err(OutboundError::InvalidUrl { .. })
        ));
        // The message names the URL and the reason.
        let err = guard.check_url("http://0x7f.0.0.1/x").expect_err("refused");
        assert_eq!(
            err.to_string(),
            "'http://0x7f.0.0.1/x' is refused: 127.0.0.1 is a loopback address"
        );
        let err = guard
            .check_url("http://[::ffff:10.0.0.1]/")
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "'http://[::ffff:10.0.0.1]/' is refused: ::ffff:10.0.0.1 embeds 10.0.0.1, a private-network address"
        );
    }

    #[test]
    fn the_allow_list_opens_only_what_it_names() {
        let policy = OutboundPolicy::allowing(&["127.0.0.1/32".into(), "10.0.0.0/8".into()])
            .expect("policy");
        let guard = OutboundGuard::new(policy);
        for url in [
            "http://127.0.0.1:9/",
            "http://127.1:9/",
            "http://[::ffff:127.0.0.1]/",
            "http://10.20.30.40/",
            "http://localhost:9/",
        ] {
            assert_eq!(refusal(&guard, url), None, "{url}");
        }
        // `localhost` is whichever loopback address the list names.
        let v6 = OutboundGuard::new(OutboundPolicy::allowing(&["::1".into()]).expect("policy"));
        assert!(refusal(&v6, "http://localhost/").is_none());
        assert!(refusal(&v6, "http://127.0.0.1/").is_some());
        for url in ["http://127.0.0.2/", "http://192.168.0.1/", "http://[::1]/"] {
            assert!(refusal(&guard, url).is_some(), "{url}");
        }
        // Metadata stays refused even inside an allowed network.
        let wide = OutboundGuard::new(
            OutboundPolicy::allowing(&["169.254.0.0/16".into(), "fd00::/8".into()])
                .expect("policy"),
        );
        assert!(refusal(&wide, "http://169.254.1.1/").is_none());
        assert!(refusal(&wide, "http://169.254.169.254/").is_some());
        assert!(refusal(&wide, "http://[fd00:ec2::254]/").is_some());
        // This server's own endpoint stays refused.
        let mut own = OutboundPolicy::allowing(&["127.0.0.0/8".into()]).expect("policy");
        own.own_endpoints = vec!["127.0.0.1:8080".parse().expect("addr")];
        let own = OutboundGuard::new(own);
        assert_eq!(
            refusal(&own, "http://127.0.0.1:8080/v1/rules"),
            Some(Refusal::OwnEndpoint)
        );
        assert!(refusal(&own, "http://localhost:8080/").is_some());
        assert_eq!(refusal(&own, "http://127.0.0.1:8081/"), None);

        assert!(matches!(
            OutboundPolicy::allowing(&["10.0.0.0/33".into()]),
            Err(OutboundError::InvalidNetwork { .. })
        ));
        assert!(OutboundPolicy::allowing(&["private".into()]).is_err());
    }

    #[test]
    fn smtp_hosts_are_checked_as_http_hosts_are() {
        let guard = OutboundGuard::default();
        for url in [
            "smtp://127.1:25",
            "smtp://2130706433:587",
            "smtps://[::ffff:10.0.0.1]:465",
            "smtp://localhost:25",
        ] {
            assert!(refusal(&guard, url).is_some(), "{url}");
        }
        assert_eq!(refusal(&guard, "smtp://smtp.example.com:587"), None);
        assert_eq!(
            refusal(&guard, "smtp://user@smtp.example.com:587"),
            Some(Refusal::Credentials)
        );
        let mut own = OutboundPolicy::allowing(&["127.0.0.0/8".into()]).expect("policy");
        own.own_endpoints = vec!["127.0.0.1:2525".parse().expect("addr")];
        let own = OutboundGuard::new(own);
        assert_eq!(
            refusal(&own, "smtp://127.0.0.1:2525"),
            Some(Refusal::OwnEndpoint)
        );
        assert_eq!(refusal(&own, "smtp://127.0.0.1:2526"), None);
    }

    #[tokio::test]
    async fn every_resolved_address_is_checked_and_hidden_from_the_message() {
        let table = Table::with(&[
            ("public.test", &[&["93.184.216.34", "2606:2800:220:1::1"]]),
            ("mixed.test", &[&["93.184.216.34", "10.1.2.3"]]),
            ("mapped.test", &[&["::ffff:169.254.169.254"]]),
            ("rebinds.test", &[&["93.184.216.34"], &["127.0.0.1"]]),
        ]);
        let guard = OutboundGuard::default().with_resolver(table);
        assert!(guard.check("https://public.test/h").await.is_ok());
        let err = guard
            .check("https://mixed.test/h")
            .await
            .expect_err("mixed");
        assert_eq!(
            err.to_string(),
            "'https://mixed.test/h' is refused: the host resolves to a private-network address"
        );
        assert!(!err.to_string().contains("10.1.2.3"));
        let err = guard
            .check("https://mapped.test/")
            .await
            .expect_err("mapped");
        assert!(err.to_string().contains("cloud metadata"), "{err}");
        // The first answer is public, the next one loopback: each resolution is checked.
        assert!(guard.check("https://rebinds.test/").await.is_ok());
        assert!(guard.check("https://rebinds.test/").await.is_err());
        // A name that does not resolve is not a refusal: the delivery checks again.
        let err = guard
            .check("https://nowhere.test/")
            .await
            .expect_err("none");
        assert!(!err.is_refusal(), "{err}");
    }

    #[tokio::test]
    async fn the_client_connects_only_to_checked_addresses() {
        // A listener on loopback, reached through a name that resolves to it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let guard = OutboundGuard::default()
            .with_resolver(Table::with(&[("inside.test", &[&["127.0.0.1"]])]));
        let client = guard.client_builder().build().expect("client");
        let error = client
            .post(format!("http://inside.test:{port}/"))
            .send()
            .await
            .expect_err("refused");
        let refusal = refusal_in(&error).expect("the guard's refusal in the error");
        assert!(refusal.is_refusal(), "{refusal}");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), listener.accept())
                .await
                .is_err(),
            "nothing connected"
        );
    }
}
