//! Issue 11 over HTTP: signing in and out, sessions in cookies, CSRF on every form, and what a
//! viewer may not do. The browser tests (crates/pipewright/tests/ui) drive the same pages in
//! Chromium.

use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};

fn enc(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

use clock::Clock;

use crate::{TestApp, spawn_app};

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// GET `path` with a cookie.
pub(crate) async fn get_with(
    http: &reqwest::Client,
    app: &TestApp,
    cookie: &str,
    path: &str,
) -> reqwest::Response {
    http.get(app.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

/// POST a form to `path` with a cookie.
pub(crate) async fn post_form(
    http: &reqwest::Client,
    app: &TestApp,
    cookie: &str,
    path: &str,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    http.post(app.url(path))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(enc(pairs))
        .send()
        .await
        .unwrap()
}

fn cookie_of(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

pub(crate) fn field(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).expect(name) + name.len() + 15;
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

pub(crate) async fn user(app: &TestApp, email: &str, role: store::UserRole) {
    let hash = server::web::auth::hash_password("correct horse battery").unwrap();
    app.store
        .create_user(
            store::NewUser {
                id: email.into(),
                name: email.split('@').next().unwrap().into(),
                role,
                password_hash: hash,
            },
            false,
        )
        .await
        .unwrap();
}

/// Signs in; the session cookie.
pub(crate) async fn sign_in(
    app: &TestApp,
    http: &reqwest::Client,
    email: &str,
    password: &str,
) -> (u16, Option<String>) {
    let form = http.get(app.url("/login")).send().await.unwrap();
    let login = cookie_of(&form, "pw_login").expect("the form's token cookie");
    let token = field(&form.text().await.unwrap(), "csrf");
    let r = post_form(
        http,
        app,
        &login,
        "/login",
        &[
            ("csrf", token.as_str()),
            ("email", email),
            ("password", password),
        ],
    )
    .await;
    let status = r.status().as_u16();
    (status, cookie_of(&r, "pw_session"))
}

#[tokio::test]
async fn sign_in_sessions_csrf_and_roles() {
    let app = spawn_app().await;
    let http = client();
    user(&app, "omar@acme.example", store::UserRole::Manager).await;
    user(&app, "vic@acme.example", store::UserRole::Viewer).await;

    // Pages need a session: the browser is sent to the form, which will come back.
    let r = http.get(app.url("/pipeline")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Fpipeline");

    // A wrong password is refused without saying which part was wrong.
    let (status, session) = sign_in(&app, &http, "omar@acme.example", "guess").await;
    assert_eq!((status, session.is_none()), (401, true));
    let (status, session) =
        sign_in(&app, &http, "nobody@acme.example", "correct horse battery").await;
    assert_eq!((status, session.is_none()), (401, true));

    // The right one starts a session: an HttpOnly, Secure, SameSite cookie.
    let form = http.get(app.url("/login")).send().await.unwrap();
    let login = cookie_of(&form, "pw_login").unwrap();
    let token = field(&form.text().await.unwrap(), "csrf");
    let r = post_form(
        &http,
        &app,
        &login,
        "/login",
        &[
            ("csrf", token.as_str()),
            ("email", "Omar@acme.example"),
            ("password", "correct horse battery"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let set = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("pw_session="))
        .unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    let session = set.split(';').next().unwrap().to_owned();
    // The session's secret is not what the database keeps.
    let secret = session.trim_start_matches("pw_session=");
    assert!(
        app.store
            .session(secret, app.clock.now())
            .await
            .unwrap()
            .is_none()
    );

    let page = get_with(&http, &app, &session, "/inbox").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("omar · manager"), "{html}");
    let csrf = field(&html, "csrf");

    // A form without the session's token is refused and changes nothing.
    let r = post_form(&http, &app, &session, "/logout", &[("csrf", "forged")]).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("security token (CSRF)"));
    let r = http
        .post(app.url("/inbox/x/acknowledge"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let still = get_with(&http, &app, &session, "/inbox").await;
    assert_eq!(
        still.status(),
        200,
        "the session survived the forged sign-out"
    );

    // A viewer reads but cannot act.
    let (_, viewer) = sign_in(&app, &http, "vic@acme.example", "correct horse battery").await;
    let viewer = viewer.unwrap();
    let page = get_with(&http, &app, &viewer, "/inbox").await;
    let vcsrf = field(&page.text().await.unwrap(), "csrf");
    let r = post_form(
        &http,
        &app,
        &viewer,
        "/inbox/any/acknowledge",
        &[("csrf", vcsrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("(viewer) may not act on exceptions")
    );

    // Signing out ends the session.
    let r = post_form(&http, &app, &session, "/logout", &[("csrf", csrf.as_str())]).await;
    assert_eq!(r.status(), 303);
    let after = get_with(&http, &app, &session, "/inbox").await;
    assert_eq!(after.status(), 303);

    // API tokens keep working for the API.
    let (status, _) = app.get(&app.reader, "/api/v1/risk/model").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_throttled_until_they_age_out() {
    let app = spawn_app().await;
    let http = client();
    user(&app, "sam@acme.example", store::UserRole::Rep).await;
    for _ in 0..server::web::auth::THROTTLE_FAILURES {
        let (status, _) = sign_in(&app, &http, "sam@acme.example", "a guess").await;
        assert_eq!(status, 401);
    }
    // Now even the right password waits: guessing cannot run at the speed of requests.
    let (status, session) = sign_in(&app, &http, "sam@acme.example", "correct horse battery").await;
    assert_eq!((status, session.is_none()), (429, true));
    // Another email is not held up.
    user(&app, "ana@acme.example", store::UserRole::Rep).await;
    let (status, _) = sign_in(&app, &http, "ana@acme.example", "correct horse battery").await;
    assert_eq!(status, 303);
    // Fifteen minutes on, the failures have aged out.
    app.clock.advance(std::time::Duration::from_secs(15 * 60));
    let (status, session) = sign_in(&app, &http, "sam@acme.example", "correct horse battery").await;
    assert_eq!((status, session.is_some()), (303, true));
}

const LEGAL: &str = r#"
playbook: legal
owner: omar@acme.example
stages: [legal]
rules:
  - id: stuck-in-legal
    why: Legal review stalls silently; the owner's manager hears first.
    when: { in_stage_for: { stage: legal, longer_than: 10d } }
    then:
      - escalate: { to: deal.owner.manager, reason: legal-stall, sla: 1d }
"#;

#[tokio::test]
async fn a_rep_acts_only_on_the_exceptions_they_hold() {
    let playbooks = tempfile::tempdir().unwrap();
    std::fs::write(playbooks.path().join("legal.yaml"), LEGAL).unwrap();
    let app = crate::spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    let person = |id: &str, data: &str| {
        crate::event(
            "person.created",
            &format!("p-{id}"),
            "2026-10-01T00:00:00Z",
            &format!(r#""person":"{id}""#),
            data,
        )
    };
    app.send(&[
        person(
            "sam@acme.example",
            r#"{"name":"Sam","manager":"omar@acme.example"}"#,
        ),
        person(
            "omar@acme.example",
            r#"{"name":"Omar","roles":["manager"]}"#,
        ),
        crate::event(
            "deal.created",
            "d1",
            "2026-11-02T09:00:00Z",
            r#""deal":"D-1""#,
            r#"{"name":"Globex","stage":"legal","owner":"sam@acme.example"}"#,
        ),
    ])
    .await;
    app.store
        .fire_due_timers(app.clock.now(), 100)
        .await
        .unwrap();
    app.server_state()
        .dispatcher
        .clone()
        .unwrap()
        .run_once()
        .await
        .unwrap();
    let held = app
        .store
        .exceptions(&store::ExceptionQuery {
            status: Some("open".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].assignee, "omar@acme.example");
    let id = held[0].id.clone();

    let http = client();
    user(&app, "sam@acme.example", store::UserRole::Rep).await;
    user(&app, "omar@acme.example", store::UserRole::Rep).await;
    let acknowledge = format!("/inbox/{id}/acknowledge");
    // Sam is a rep and does not hold it: refused.
    let (_, sam) = sign_in(&app, &http, "sam@acme.example", "correct horse battery").await;
    let sam = sam.unwrap();
    let html = get_with(&http, &app, &sam, "/inbox")
        .await
        .text()
        .await
        .unwrap();
    let r = post_form(
        &http,
        &app,
        &sam,
        &acknowledge,
        &[("csrf", &field(&html, "csrf"))],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("may not act on an exception someone else holds")
    );
    // Omar holds it: his inbox shows it with its buttons, and acknowledging works.
    let (_, omar) = sign_in(&app, &http, "omar@acme.example", "correct horse battery").await;
    let omar = omar.unwrap();
    let html = get_with(&http, &app, &omar, "/inbox")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Globex: legal-stall") && html.contains("Acknowledge"),
        "{html}"
    );
    let r = post_form(
        &http,
        &app,
        &omar,
        &acknowledge,
        &[("csrf", &field(&html, "csrf"))],
    )
    .await;
    assert_eq!(r.status(), 303);
    let (item, _) = app.store.exception(&id).await.unwrap().unwrap();
    assert_eq!(item.status, "acknowledged");
    assert_eq!(item.acknowledged_by.as_deref(), Some("omar@acme.example"));
}

const LINKS: &str = r#"
playbook: links
owner: omar@acme.example
rules:
  - id: deal-note
    why: A note on a deal is worth a look.
    when: { event: note.added }
    then:
      - alert: { to: deal.owner, text: "{{ deal.name }} has a note" }
  - id: lead-note
    why: A note on a lead is worth a look.
    record: lead
    when: { event: note.added }
    then:
      - alert: { to: lead.owner, text: "{{ lead.name }} has a note" }
"#;

/// Issue 23: what an alert links to is the web UI's page of its record — a deal's, or a lead's
/// (a page of its own) — and a signed-in person opens it; the outbox links there too.
#[tokio::test]
async fn an_alert_links_to_the_page_of_its_record_in_the_web_ui() {
    let playbooks = tempfile::tempdir().unwrap();
    std::fs::write(playbooks.path().join("links.yaml"), LINKS).unwrap();
    let app = crate::spawn_with_playbooks_on(playbooks.path(), 3_600_000, |s| {
        s.delivery.dry_run = true;
        s.delivery.public_url = "https://pipewright.acme.example".into();
    })
    .await;
    let at = "2026-11-20T11:00:00Z";
    app.send(&[
        crate::event(
            "person.created",
            "p1",
            "2026-10-01T00:00:00Z",
            r#""person":"sam@acme.example""#,
            r#"{"name":"Sam"}"#,
        ),
        crate::event(
            "deal.created",
            "d1",
            "2026-11-02T09:00:00Z",
            r#""deal":"D-1""#,
            r#"{"name":"Globex rollout","stage":"proposal","owner":"sam@acme.example"}"#,
        ),
        crate::event(
            "lead.created",
            "l7",
            "2026-11-02T09:00:00Z",
            r#""lead":"L-7""#,
            r#"{"name":"Initech","company":"Initech","owner":"sam@acme.example"}"#,
        ),
        crate::event("note.added", "n1", at, r#""deal":"D-1""#, r#"{"text":"x"}"#),
        crate::event("note.added", "n2", at, r#""lead":"L-7""#, r#"{"text":"y"}"#),
    ])
    .await;
    let dispatcher = app.server_state().dispatcher.clone().unwrap();
    assert_eq!(dispatcher.run_once().await.unwrap().dry_run, 2);
    let effects = app.store.effects(None, 10).await.unwrap();
    let link = |rule: &str| {
        let e = effects.iter().find(|e| e.rule == rule).unwrap();
        let text = e.rendered.as_ref().unwrap()["text"].as_str().unwrap();
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("Open in pipewright: "))
            .unwrap_or_else(|| panic!("{text}"));
        url.strip_prefix("https://pipewright.acme.example")
            .unwrap_or_else(|| panic!("{url}"))
            .to_owned()
    };
    let (deal, lead) = (link("deal-note"), link("lead-note"));
    assert_eq!((deal.as_str(), lead.as_str()), ("/deals/D-1", "/leads/L-7"));

    let http = client();
    user(&app, "vic@acme.example", store::UserRole::Viewer).await;
    let (_, session) = sign_in(&app, &http, "vic@acme.example", "correct horse battery").await;
    let session = session.unwrap();
    for (path, shows) in [(&deal, "Globex rollout"), (&lead, "Initech")] {
        let page = get_with(&http, &app, &session, path).await;
        assert_eq!(page.status(), 200, "{path}");
        let html = page.text().await.unwrap();
        assert!(html.contains(shows), "{path}: {html}");
    }
    let html = get_with(&http, &app, &session, &lead)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Every rule, for this lead") && html.contains("lead-note"),
        "the lead's page shows what the rules did: {html}"
    );
    let outbox = get_with(&http, &app, &session, "/outbox")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        outbox.contains(r#"<a href="/leads/L-7">lead:L-7</a>"#)
            && outbox.contains(r#"<a href="/deals/D-1">deal:D-1</a>"#),
        "{outbox}"
    );
    // No such lead: a page saying so.
    let missing = get_with(&http, &app, &session, "/leads/L-404").await;
    assert_eq!(missing.status(), 404);

    // Signed out, the link leads through the sign-in form to its page.
    let r = http.get(app.url(&lead)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let form_at = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(form_at, "/login?next=%2Fleads%2FL-7");
    let after = |next: String| {
        let http = http.clone();
        let form_at = form_at.clone();
        let app = &app;
        async move {
            let form = http.get(app.url(&form_at)).send().await.unwrap();
            let login = cookie_of(&form, "pw_login").unwrap();
            let html = form.text().await.unwrap();
            // HTML-escaped, as anything from a query is.
            assert_eq!(field(&html, "next"), "&#x2f;leads&#x2f;L-7", "{html}");
            let r = post_form(
                &http,
                app,
                &login,
                "/login",
                &[
                    ("csrf", field(&html, "csrf").as_str()),
                    ("email", "vic@acme.example"),
                    ("password", "correct horse battery"),
                    ("next", next.as_str()),
                ],
            )
            .await;
            assert_eq!(r.status(), 303);
            r.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(after(lead.clone()).await, "/leads/L-7");
    // Only to a page of this server: never elsewhere.
    for elsewhere in [
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example",
    ] {
        assert_eq!(after(elsewhere.to_owned()).await, "/", "{elsewhere}");
    }
}
