//! Wiring of the whole platform on one node: NATS (supervised or external), the event store,
//! claims, the entity read model, the application layer and the HTTP API; and its orderly
//! shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use thinglake_api::ApiState;
use thinglake_infra::auth::{JwtKeys, TokenLifetimes, load_or_create_signing_key};
use thinglake_infra::claims::Claims;
use thinglake_infra::event_store::EventStore;
use thinglake_infra::nats_auth::{NatsCredentials, client_options};
use thinglake_infra::nats_server::{LocalNatsServer, NatsServerOptions, SupervisedNatsServer};
use thinglake_infra::subjects::Subjects;
use thinglake_infra::telemetry_store::TelemetryStore;
use thinglake_lake::table::{LAKE_EVENTS, LAKE_TELEMETRY, LAKE_TELEMETRY_HOURLY};
use thinglake_mqtt::{MqttConfig, MqttServer, TlsConfig};
use thinglake_pgwire::{PgOptions, PgServer};
use thinglake_platform::{Platform, PlatformConfig};
use thinglake_projections::EntityView;
use thinglake_projections::lake::Lake;
use thinglake_queries::QueryEngine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Settings;
use crate::http_server::{self, HttpLimits};
use crate::{demo, nats_ingress};

/// A started platform. Dropping it without [`RunningApp::shutdown`] aborts its tasks.
pub struct RunningApp {
    pub http_addr: SocketAddr,
    /// Where the MQTT device transport listens (its port is known after binding port 0).
    pub mqtt_addr: SocketAddr,
    /// Where the MQTT TLS listener listens, when a certificate and key are configured.
    pub mqtt_tls_addr: Option<SocketAddr>,
    /// Where the PostgreSQL wire protocol listens, unless it is off.
    pub pg_addr: Option<SocketAddr>,
    /// The NATS server's URL, without credentials.
    pub nats_url: String,
    /// The supervised nats-server's users, when the platform runs one.
    pub nats_credentials: Option<NatsCredentials>,
    pub platform: Platform,
    /// The generated password of a system administrator created on this start.
    pub generated_admin_password: Option<String>,
    /// The lake projections and their hot tails.
    pub lake: Lake,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The lake projections stop after everything that feeds the log, and before NATS.
    lake_shutdown: CancellationToken,
    lake_tracker: TaskTracker,
    nats: Option<SupervisedNatsServer>,
}

impl RunningApp {
    /// Starts everything and returns once the HTTP API accepts requests.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        // Boxed: the start's state machine is larger than clippy's 16 KiB future limit, and every
        // caller would otherwise carry it on its own stack.
        Box::pin(Self::start_boxed(settings)).await
    }

    async fn start_boxed(settings: Settings) -> anyhow::Result<Self> {
        info!(data_dir = %settings.data_dir.display(), "starting thinglake");
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
        // A lake that cannot be written (unknown scheme, unreachable store, missing bucket) fails
        // the start before anything else starts.
        let lake_options = settings.lake_options()?;
        Box::pin(lake_options.location.check()).await.context("checking the lake location")?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();

        // NATS stops last, after everything that writes to it: it has its own token.
        let (configured_url, nats) = match &settings.nats_url {
            Some(url) => (url.clone(), None),
            None => {
                let mut options = NatsServerOptions::new(&settings.data_dir);
                options.port = settings.nats_port;
                options.sync_interval = settings.nats_sync_interval;
                options.subject_prefix = settings.subject_prefix.clone();
                let server = LocalNatsServer::start(options).await.context("starting the local nats-server")?;
                info!(url = %server.url(), "local nats-server started");
                let supervised = server.supervise(CancellationToken::new());
                (supervised.url(), Some(supervised))
            }
        };
        // The supervised server's platform user, or the credentials in THINGLAKE_NATS_URL.
        let signed_in = nats.as_ref().map(|n| n.credentials().platform.clone());
        let connect_options = || client_options(&configured_url, signed_in.as_ref());
        // Without credentials: it is logged and kept.
        let (options, nats_url) = connect_options();
        let client = options
            .name("thinglake")
            .retry_on_initial_connect()
            .connect(&nats_url)
            .await
            .with_context(|| format!("connecting to NATS at {nats_url}"))?;
        let subjects = Subjects::new(settings.subject_prefix.clone());
        let store = EventStore::connect(client.clone(), subjects.clone()).await.context("setting up the event streams")?;
        let claims = Claims::open(store.jetstream(), &subjects).await.context("opening the claims bucket")?;
        let secret = load_or_create_signing_key(store.jetstream(), &subjects, settings.jwt_secret.as_ref().map(|s| s.expose().to_string()))
            .await
            .context("loading the JWT signing key")?;
        let jwt = JwtKeys::new(&secret, TokenLifetimes { access: settings.jwt_access_ttl, refresh: settings.jwt_refresh_ttl });

        let lake_shutdown = CancellationToken::new();
        let lake_tracker = TaskTracker::new();
        let lake_location = lake_options.location.clone();
        let lake = Lake::start(
            store.jetstream().clone(),
            subjects.clone(),
            lake_options,
            &lake_tracker,
            lake_shutdown.clone(),
        )
        .await
        .context("starting the lake projections")?;

        // Bound before the platform is built: activation links carry its address.
        let listener = TcpListener::bind((settings.http_host, settings.http_port))
            .await
            .with_context(|| format!("binding HTTP on {}:{}", settings.http_host, settings.http_port))?;
        let http_addr = listener.local_addr().context("reading the HTTP address")?;

        let view = EntityView::new();
        thinglake_projections::follower::start(store.clone(), view.clone(), &tracker, shutdown.clone())
            .await
            .context("building the entity read model from the log")?;

        // The latest values are seeded and followed on the JetStream stream itself.
        let telemetry = TelemetryStore::new(store.jetstream().clone(), subjects.clone(), settings.telemetry.publish_timeout);
        let platform = Platform::new(
            store,
            claims,
            view,
            jwt,
            PlatformConfig {
                public_url: settings.public_url_for(http_addr),
                activation_token_ttl: settings.activation_token_ttl,
                passwords: settings.passwords.clone(),
                login: settings.login,
                trust_forwarded_for: settings.trust_forwarded_for,
                telemetry: settings.telemetry.clone(),
                quotas: settings.quotas.clone(),
                clock: settings.clock.clone(),
                ..PlatformConfig::default()
            },
        );
        let tails = [LAKE_TELEMETRY, LAKE_TELEMETRY_HOURLY, LAKE_EVENTS]
            .into_iter()
            .filter_map(|table| lake.hot_tail(table).map(|tail| (table, tail.clone())))
            .collect();
        let queries = QueryEngine::new(lake_location.clone(), tails, settings.query.clone())
            .context("starting the query engine")?;
        platform.attach_query_engine(queries);
        // What retention trimmed from the telemetry stream is read back from the lake first.
        thinglake_projections::lake::seed::seed_latest_values(&lake_location, &telemetry, platform.latest())
            .await
            .context("seeding the latest values from the lake")?;
        thinglake_projections::latest::start(
            telemetry,
            platform.latest().clone(),
            &tracker,
            shutdown.clone(),
        )
        .await
        .context("building the latest values from the telemetry stream")?;
        let checker = platform.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move { checker.run_inactivity_checker(stop.cancelled_owned()).await });
        if settings.nats_ingress {
            // A connection of its own: on the platform's, every request and reply would share one
            // socket and one client task with the JetStream publishes, their acks and the
            // followers' reads.
            let ingress = connect_options()
                .0
                .name("thinglake-ingress")
                .retry_on_initial_connect()
                .connect(&nats_url)
                .await
                .with_context(|| format!("connecting the NATS ingress to {nats_url}"))?;
            let subscriber =
                nats_ingress::subscribe(&ingress, &subjects).await.context("subscribing to the NATS ingress")?;
            tracker.spawn(nats_ingress::serve(subscriber, ingress, subjects.clone(), platform.clone(), shutdown.clone()));
        }
        if settings.admin_password.as_ref().is_some_and(|p| p.expose().chars().count() < settings.passwords.min_length) && !settings.demo {
            warn!(min_length = settings.passwords.min_length, "the configured admin password is shorter than users may choose");
        }
        let generated_admin_password = platform
            .bootstrap_sys_admin(&settings.admin_email, settings.admin_password.as_ref().map(|p| p.expose().to_string()))
            .await
            .context("creating the first system administrator")?;
        // A tenant deletion cut short by a crash is finished in the background.
        let finishing = platform.clone();
        tracker.spawn(async move {
            if let Err(e) = finishing.finish_tenant_deletions().await {
                warn!(error = %e, "finishing interrupted tenant deletions failed; deleting the tenant again finishes it");
            }
        });
        if settings.demo {
            let devices = Box::pin(demo::prepare(&platform, &settings.admin_email)).await.context("preparing the demo tenant")?;
            tracker.spawn(demo::simulate(platform.clone(), devices, shutdown.clone()));
        }

        // The web UI answers only what no API route matched (pages and its bundle).
        let api = ApiState { platform: platform.clone() };
        let router = thinglake_api::router(api.clone())
            .merge(thinglake_api::ws::routes(api, shutdown.clone(), settings.limits.ws_max_message_bytes))
            .merge(thinglake_web::router(&settings.web_dir));
        let http_limits = HttpLimits {
            header_timeout: settings.limits.http_header_timeout,
            max_connections: settings.limits.http_max_connections,
        };
        http_server::spawn(listener, router, http_limits, &tracker, shutdown.clone());
        info!(%http_addr, max_connections = http_limits.max_connections, "HTTP API listening");
        let mqtt_config = MqttConfig {
            max_payload_size: platform.config().telemetry.max_payload_bytes,
            max_inflight: settings.mqtt_max_inflight,
            max_connections: settings.mqtt_max_connections,
            ..MqttConfig::default()
        };
        let mqtt_tls_addr = match &settings.mqtt_tls {
            Some(files) => {
                let tls = TlsConfig::from_pem_files(&files.cert, &files.key).context("loading the MQTT TLS certificate")?;
                let addr = SocketAddr::new(settings.mqtt_host, settings.mqtt_tls_port);
                let listener = MqttServer::bind(addr, platform.clone(), mqtt_config.clone(), shutdown.clone())
                    .await
                    .context("starting the MQTT TLS transport")?
                    .with_tls(tls);
                let local = listener.local_addr();
                listener.spawn(&tracker);
                Some(local)
            }
            None => None,
        };
        let mqtt = MqttServer::bind(SocketAddr::new(settings.mqtt_host, settings.mqtt_port), platform.clone(), mqtt_config, shutdown.clone())
            .await
            .context("starting the MQTT transport")?;
        let mqtt_addr = mqtt.local_addr();
        mqtt.spawn(&tracker);
        let pg_addr = match settings.pg_listen {
            Some(addr) => {
                let tls = match &settings.limits.pg_tls {
                    Some(files) => {
                        Some(TlsConfig::from_pem_files(&files.cert, &files.key).context("loading the PostgreSQL TLS certificate")?)
                    }
                    None if !addr.ip().is_loopback() => {
                        warn!(%addr, "the PostgreSQL wire protocol listens beyond loopback without TLS: passwords and tokens cross the network in clear text (set --pg-tls-cert and --pg-tls-key)");
                        None
                    }
                    None => None,
                };
                let options = PgOptions {
                    tls,
                    max_connections: settings.limits.pg_max_connections,
                    idle_timeout: settings.limits.pg_idle_timeout,
                };
                let pg = Box::pin(PgServer::bind(addr, platform.clone(), options, shutdown.clone()))
                    .await
                    .with_context(|| format!("binding the PostgreSQL wire protocol on {addr}"))?;
                let local = pg.local_addr().context("reading the PostgreSQL wire protocol address")?;
                pg.spawn(&tracker);
                Some(local)
            }
            None => None,
        };
        let nats_credentials = nats.as_ref().map(|n| n.credentials().clone());
        Ok(Self { http_addr, mqtt_addr, mqtt_tls_addr, pg_addr, nats_url, nats_credentials, platform, generated_admin_password, lake, shutdown, tracker, lake_shutdown, lake_tracker, nats })
    }

    /// Stops accepting requests, lets in-flight work finish, then stops the supervised
    /// nats-server.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(30), self.tracker.wait()).await.is_err() {
            warn!("tasks did not stop within 30 s");
        }
        // Flush and commit the lake projections while NATS is still up.
        self.lake_shutdown.cancel();
        self.lake_tracker.close();
        if tokio::time::timeout(Duration::from_secs(30), self.lake_tracker.wait()).await.is_err() {
            warn!("lake projections did not stop within 30 s");
        }
        if let Some(nats) = self.nats
            && let Err(e) = nats.shutdown().await {
                warn!(error = %e, "stopping the local nats-server");
            }
        info!("thinglake stopped");
    }
}
