// Herald's inbox example: the browser half of Herald's loop.
//
// Configuration comes from the URL's #fragment (never sent to a server, so
// the token stays out of access logs):
//
//   account  the account's 24-hex id (its channel is
//            presence-message-wm-global<account>)
//   user     the signed-in user's 24-hex id: whose inbox and read state the
//            page shows, and the presence member
//   token    a Herald API token. What a browser should hold is one bound to
//            this user (`herald token create --name inbox --account <account>
//            --user <user>`): it reads and marks only this user's inbox and
//            signs only this user's channels, but cannot start an export
//            (403: exports go through the app's server). When the page
//            stands in for the app's server in a demo, a token bound to the
//            account (`--account <account>` alone) does the export too.
//            Leave it out when `api` is your own app's forwarding route
//   key      the Pusher app key (public)
//   wsHost, wsPort   a self-hosted Pusher-protocol server (Sockudo, soketi,
//            Reverb); or `cluster` for Pusher Channels itself
//   tls=1    connect with wss:// (default ws://)
//   api      where Herald's /v1 is, default "/v1" (same origin)
//   userChannel  the user's own channel, as Herald's `push.user_channel`
//            names it: a template with {account} and {user}, default
//            private-message-wm-user-{account}-{user}
//
// e.g. /examples/inbox/#account=5f0c…&user=5f0c…&token=…&key=app-key&wsHost=127.0.0.1&wsPort=6001
//
// The page joins two channels, both signed by Herald's POST /v1/push/auth
// for `user`: the account's presence channel (messages to everyone, a
// notice without title or content of a message to one user, and the
// exports' progress) and the user's own private channel (messages to this
// user in full, `message_read` when this user marks something read on
// another tab or device, and `inbox_changed` when they archive, unarchive,
// mark unread or delete something).
//
// In a real product the page belongs to the web app (say PHP), which holds
// the session: it forwards `api` calls to Herald adding its token, and takes
// `userId` of /push/auth from its session, never from the browser (docs/api.md,
// "Channel authorization for the browser").
'use strict';

(() => {
  const params = new URLSearchParams(location.hash.slice(1));
  const config = {
    api: params.get('api') || '/v1',
    account: params.get('account') || '',
    user: params.get('user') || '',
    token: params.get('token') || '',
    key: params.get('key') || '',
    wsHost: params.get('wsHost'),
    wsPort: Number(params.get('wsPort') || 6001),
    cluster: params.get('cluster') || '',
    tls: params.get('tls') === '1',
    userChannel: params.get('userChannel') || 'private-message-wm-user-{account}-{user}',
  };
  // Everyone of the account is on the first; only this user on the second.
  const accountChannel = 'presence-message-wm-global' + config.account;
  const userChannel = config.userChannel
    .replaceAll('{account}', config.account)
    .replaceAll('{user}', config.user);

  const $ = (id) => document.getElementById(id);
  const ui = {
    notice: $('notice'),
    connection: $('connection'),
    bell: $('bell'),
    unread: $('unread-count'),
    inbox: $('inbox'),
    list: $('messages'),
    empty: $('empty'),
    views: $('views'),
    tabs: $('tabs'),
    markAll: $('mark-all-read'),
    exportStart: $('export-start'),
    exportBar: $('export-bar'),
    exportStatus: $('export-status'),
    exportDownload: $('export-download'),
  };

  /** Shows a problem on the page (and in the console). */
  function notify(message) {
    console.error(message);
    ui.notice.textContent = message;
    ui.notice.hidden = false;
  }

  // ---- Herald's /v1 -------------------------------------------------------

  /**
   * Calls Herald's /v1 (or the app's forwarding route): JSON in and out,
   * the token as a bearer when there is one. Throws with Herald's error
   * message on a non-2xx answer (the error's `status` is the HTTP status).
   */
  async function api(path, { method = 'GET', body } = {}) {
    const headers = { Accept: 'application/json' };
    if (config.token) headers.Authorization = 'Bearer ' + config.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(config.api + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      const error = new Error(`${method} ${path}: HTTP ${response.status} ${answer.error || ''}`);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  // The signed-in user's inbox: the account's messages to everyone and the
  // messages to this user, with this user's read state.
  const inboxPath = () => `/accounts/${config.account}/users/${config.user}/messages`;

  // ---- The bell, the tabs and the list -----------------------------------

  // Answers may come back out of order (two events, two reads): each kind
  // of read is numbered, and only the latest one asked is shown. A count
  // that arrives with an event (`message_read`, `inbox_changed`) or a mark's
  // answer also takes a number, so a read asked before it cannot put an
  // older count back.
  let unreadAsked = 0;
  let listAsked = 0;

  // What the list shows: the inbox or the archived messages, of every
  // category ('') or of one.
  const shown = { archived: false, category: '' };
  // A tab per category ever seen, kept when its unread count drops to 0.
  const tabs = new Map([['', ui.tabs.querySelector('[data-category=""]')]]);

  /** The bell and the "All" tab. */
  function paintUnread(unread) {
    ui.unread.textContent = unread > 99 ? '99+' : String(unread);
    ui.unread.dataset.count = String(unread);
    paintTab('', unread);
  }

  /** Sets tab `category`'s count (adding the tab when it is new). */
  function paintTab(category, count) {
    let tab = tabs.get(category);
    if (!tab) {
      tab = document.createElement('button');
      tab.type = 'button';
      tab.dataset.category = category;
      tab.setAttribute('aria-pressed', 'false');
      tab.append(category, ' ', Object.assign(document.createElement('span'), { className: 'count' }));
      tab.addEventListener('click', () => show({ category }));
      tabs.set(category, tab);
      // In name order, after "All".
      const after = [...tabs.keys()].filter((c) => c && c < category).sort().pop() ?? '';
      tabs.get(after).after(tab);
    }
    if (count !== undefined) {
      tab.dataset.count = String(count);
      tab.querySelector('.count').textContent = String(count);
    }
  }

  /** Shows a count known without asking (an event's, a mark's answer). */
  function showUnread(unread) {
    unreadAsked += 1;
    paintUnread(unread);
  }

  // The bell, "All" and each category's tab, from one call. Archived and
  // deleted messages are not counted.
  async function refreshUnread() {
    const asked = ++unreadAsked;
    const counts = await (await api(`${inboxPath()}/unread-counts`)).json();
    if (asked !== unreadAsked) return;
    paintUnread(counts.unread);
    const perCategory = counts.categories || {};
    for (const category of new Set([...tabs.keys(), ...Object.keys(perCategory)])) {
      if (category) paintTab(category, perCategory[category] || 0);
    }
  }

  async function refreshList(freshId) {
    const asked = ++listAsked;
    const { archived, category } = shown;
    const query = new URLSearchParams({ limit: '20' });
    if (archived) query.set('archived', 'true');
    if (category) query.set('category', category);
    const page = await (await api(`${inboxPath()}?${query}`)).json();
    if (asked !== listAsked) return;
    ui.list.replaceChildren(...page.messages.map((m) => messageItem(m, m.id === freshId)));
    // What is listed, for tests and styles: set once the list shows it.
    ui.list.dataset.view = archived ? 'archived' : 'inbox';
    ui.list.dataset.category = category;
    ui.empty.textContent = archived ? 'Nothing archived.' : 'No messages yet.';
    ui.empty.hidden = page.messages.length > 0;
    for (const m of page.messages) if (m.category) paintTab(m.category);
  }

  /** Both the counts and the list; problems go to the notice. */
  function refresh(freshId) {
    return Promise.all([refreshUnread(), refreshList(freshId)]).catch((e) => notify(e.message));
  }

  /** Switches the view and/or the category tab, and lists again. */
  function show(change) {
    Object.assign(shown, change);
    for (const button of ui.views.querySelectorAll('[data-view]')) {
      button.setAttribute('aria-pressed', String((button.dataset.view === 'archived') === shown.archived));
    }
    for (const [category, tab] of tabs) {
      tab.setAttribute('aria-pressed', String(category === shown.category));
    }
    refreshList().catch((e) => notify(e.message));
  }

  for (const button of ui.views.querySelectorAll('[data-view]')) {
    button.addEventListener('click', () => show({ archived: button.dataset.view === 'archived' }));
  }
  tabs.get('').addEventListener('click', () => show({ category: '' }));

  function actionButton(className, text, onClick) {
    const element = document.createElement('button');
    element.type = 'button';
    element.className = className;
    element.textContent = text;
    element.addEventListener('click', () => onClick(element));
    return element;
  }

  // Where a message leads: an https:// URL or a path of this site. Herald
  // accepts nothing else; the page checks again before making it a link.
  const safeUrl = (url) => /^(https:\/\/|\/(?!\/))/.test(url || '');

  /** One message as a list item. */
  function messageItem(message, fresh) {
    const item = document.createElement('li');
    item.className = fresh ? 'message fresh' : 'message';
    item.dataset.id = message.id;
    item.dataset.read = String(message.isRead);
    item.dataset.archived = String(Boolean(message.archivedAt));
    item.dataset.status = message.status;
    item.dataset.to = message.to.target;
    if (message.category) item.dataset.category = message.category;

    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = message.title;
    // `content` may hold HTML as the producer wrote it. Shown as text here;
    // render it as HTML only through a sanitizer you trust.
    const content = document.createElement('span');
    content.className = 'content';
    content.textContent = message.content;
    const meta = document.createElement('span');
    meta.className = 'meta';
    const category = message.category ? ` · ${message.category}` : '';
    const to = message.to.target === 'user' ? ' · to you' : '';
    meta.textContent = `${message.status}${category}${to} · ${new Date(message.createdAt).toLocaleString()}`;
    item.append(title, content, meta);
    if (safeUrl(message.actionUrl)) {
      const link = document.createElement('a');
      link.className = 'action';
      link.href = message.actionUrl;
      link.textContent = 'Open';
      item.append(link);
    }

    // Each acts for this user only; Herald then tells the user's other pages.
    const id = message.id;
    const actions = document.createElement('span');
    actions.className = 'actions';
    actions.append(
      message.isRead
        ? actionButton('mark-unread', 'Mark unread', (b) => act(b, 'POST', `${id}/unread`))
        : actionButton('mark-read', 'Mark read', (b) => act(b, 'POST', `${id}/read`)),
      message.archivedAt
        ? actionButton('unarchive', 'Unarchive', (b) => act(b, 'POST', `${id}/unarchive`))
        : actionButton('archive', 'Archive', (b) => act(b, 'POST', `${id}/archive`)),
      actionButton('delete', 'Delete', (b) => act(b, 'DELETE', id)),
    );
    item.append(actions);
    return item;
  }

  // A mark, archive or delete acts for this user only. Herald then pushes
  // `message_read` or `inbox_changed` to the user's channel, for the user's
  // other pages (this one hears it too, and reads again what it has just
  // read: harmless).
  async function act(button, method, path) {
    button.disabled = true;
    try {
      await api(`${inboxPath()}/${path}`, { method });
    } catch (e) {
      notify(e.message);
    }
    await refresh();
  }

  ui.markAll.addEventListener('click', async () => {
    try {
      const { unread } = await (await api(`${inboxPath()}/read-all`, { method: 'POST' })).json();
      showUnread(unread);
      await refresh();
    } catch (e) {
      notify(e.message);
    }
  });

  ui.bell.addEventListener('click', () => {
    ui.inbox.hidden = !ui.inbox.hidden;
    ui.bell.setAttribute('aria-expanded', String(!ui.inbox.hidden));
  });

  // ---- The export ---------------------------------------------------------

  // The latest event seen per export key: an event may arrive before the
  // answer to POST /v1/exports that tells this page its key.
  const seen = new Map();
  let current = null; // the key of the export this page started

  function showProgress(percent, text) {
    const value = Math.max(0, Math.min(100, Math.round(percent)));
    ui.exportBar.style.width = value + '%';
    ui.exportBar.setAttribute('aria-valuenow', String(value));
    // Every value shown, for whoever wants to see the bar move (the test).
    const history = ui.exportBar.dataset.history;
    ui.exportBar.dataset.history = history ? `${history},${value}` : String(value);
    ui.exportStatus.textContent = text;
  }

  /** Applies what is known of export `key`, if it is the current one. */
  function showExport(key) {
    const state = seen.get(key);
    if (key !== current || !state) return;
    if (state.kind === 'progress') {
      const { processed, total, percent } = state.data;
      const of = total == null ? '' : ` of ${total}`;
      showProgress(percent ?? 0, `${processed}${of} rows`);
    } else if (state.kind === 'finish') {
      const rows = state.rows == null ? '' : `: ${state.rows.toLocaleString()} rows`;
      showProgress(100, `Finished${rows}.`);
      ui.exportDownload.href = `${config.api}/exports/${encodeURIComponent(key)}/file`;
      ui.exportDownload.dataset.key = key;
      ui.exportDownload.hidden = false;
      ui.exportStart.disabled = false;
    } else if (state.kind === 'failed') {
      ui.exportStatus.textContent = `Failed: ${state.data.error}`;
      ui.exportStart.disabled = false;
    }
  }

  function exportEvent(kind) {
    return (data) => {
      const previous = seen.get(data.key);
      // A late progress event never takes a finished export back.
      if (previous && previous.kind !== 'progress' && kind === 'progress') return;
      // The finish carries only the key: keep the row count progress gave.
      const rows = kind === 'progress' ? data.processed : previous && previous.rows;
      seen.set(data.key, { kind, data, rows });
      showExport(data.key);
    };
  }

  ui.exportStart.addEventListener('click', async () => {
    ui.exportStart.disabled = true;
    ui.exportDownload.hidden = true;
    ui.exportBar.dataset.history = '';
    showProgress(0, 'Queued…');
    try {
      const answer = await api('/exports', {
        method: 'POST',
        body: {
          accountId: config.account,
          collection: 'message',
          fields: [
            { path: 'createdAt', title: 'Created' },
            { path: 'title', title: 'Title' },
            { path: 'status', title: 'Status' },
            { path: 'isRead', title: 'Read' },
          ],
          sort: [{ path: 'createdAt', order: 'desc' }],
        },
      });
      current = (await answer.json()).key;
      showExport(current);
    } catch (e) {
      if (e.status === 403) {
        // A token bound to one user reads that user's inbox only; an export
        // of the account is the app's server's to start, with its token.
        ui.exportStatus.textContent =
          "Not with this page's token: exports go through the app's server.";
        ui.exportStart.title = 'Needs a token bound to the account';
        return; // the button stays disabled
      }
      notify(e.message);
      ui.exportStart.disabled = false;
    }
  });

  /**
   * Downloads export `key` with the token, as a file named by Herald's
   * Content-Disposition; resolves to its text. An <a href> cannot send a
   * bearer token: with a cookie session (a forwarding app) a plain link
   * would do.
   */
  async function download(key) {
    const response = await api(`/exports/${encodeURIComponent(key)}/file`);
    const blob = await response.blob();
    const disposition = response.headers.get('Content-Disposition') || '';
    const name = (/filename="([^"]+)"/.exec(disposition) || [])[1] || `${key}.csv`;
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    return blob.text();
  }

  ui.exportDownload.addEventListener('click', (event) => {
    if (!config.token) return; // a cookie session: the link works as is
    event.preventDefault();
    download(ui.exportDownload.dataset.key).catch((e) => notify(e.message));
  });

  // ---- Realtime: pusher-js on the account's and the user's channels -------

  /**
   * pusher-js asks this for each channel's signature. Herald's
   * POST /v1/push/auth signs the account's channel for any of its users and
   * the user's own channel only for that user, so `userId` is always the
   * signed-in user (in a product, the app's server sets it from its session).
   */
  function authorize({ socketId, channelName: channel }, callback) {
    api('/push/auth', {
      method: 'POST',
      body: { socketId, channelName: channel, userId: config.user },
    })
      .then((response) => response.json())
      .then((answer) => callback(null, answer))
      .catch((error) => callback(error, null));
  }

  // The latest events heard, for tests and the console: which channel
  // brought what (a colleague's message to one user comes as a notice).
  const heard = [];

  /** After a (re)subscription: whatever happened meanwhile, read once now. */
  function catchUp() {
    refresh();
    if (current) {
      api(`/exports/${encodeURIComponent(current)}`)
        .then((r) => r.json())
        .then((record) => {
          if (record.status === 'finished') exportEvent('finish')({ key: record.key || current });
        })
        .catch(() => {});
    }
  }

  function connect() {
    const options = {
      // pusher-js 8 requires a cluster; with wsHost it only names it.
      cluster: config.cluster || 'mt1',
      forceTLS: config.tls,
      channelAuthorization: { customHandler: authorize },
    };
    if (config.wsHost) {
      Object.assign(options, {
        wsHost: config.wsHost,
        wsPort: config.wsPort,
        wssPort: config.wsPort,
        // WebSocket only: the fallbacks would load SockJS from Pusher's CDN.
        enabledTransports: ['ws'],
      });
    }
    const pusher = new Pusher(config.key, options);
    const names = [accountChannel, userChannel];
    // The channels joined on the current connection: "live" needs both.
    const joined = new Set();
    pusher.connection.bind('state_change', ({ current: state }) => {
      if (state !== 'connected') joined.clear();
      if (joined.size < names.length) {
        ui.connection.dataset.state = state;
        ui.connection.textContent = state;
      }
    });

    for (const name of names) {
      const channel = pusher.subscribe(name);
      channel.bind_global((event, data) => {
        if (event.startsWith('pusher:')) return;
        heard.push({ channel: name, event, data });
        if (heard.length > 100) heard.shift();
      });
      channel.bind('pusher:subscription_succeeded', () => {
        joined.add(name);
        if (joined.size === names.length) {
          ui.connection.dataset.state = 'subscribed';
          ui.connection.textContent = 'live';
          catchUp();
        }
      });
      channel.bind('pusher:subscription_error', (error) => {
        ui.connection.dataset.state = 'failed';
        ui.connection.textContent = 'not authorized';
        notify(`Joining ${name} failed: ${error.error || error.status || error}`);
      });
      // On the account's channel: a message to everyone, or only a notice
      // (no title, no content) of a message to one user, maybe a colleague.
      // On the user's: a message to this user. Either way the inbox API
      // says what this user sees, so read it again.
      channel.bind('new_message', (data) => refresh(data.messageId));
    }

    // This user marked something read (`message_read`), or archived,
    // unarchived, marked unread or deleted something (`inbox_changed`), on
    // another page or this one: the bell shows the event's count at once;
    // then the list is read again, and the counts with it (an event may
    // overtake another).
    for (const event of ['message_read', 'inbox_changed']) {
      pusher.channel(userChannel).bind(event, (data) => {
        if (typeof data.unread === 'number') showUnread(data.unread);
        refresh();
      });
    }

    const account = pusher.channel(accountChannel);
    account.bind('export_progress', exportEvent('progress'));
    account.bind('export_finish', exportEvent('finish'));
    account.bind('export_failed', exportEvent('failed'));
  }

  // ---- Start --------------------------------------------------------------

  const hex = /^[0-9a-f]{24}$/;
  const missing = ['account', 'user', 'key'].filter((name) => !config[name]);
  if (missing.length > 0 || !hex.test(config.account) || !hex.test(config.user)) {
    notify(
      `This page needs ${missing.join(', ') || 'a 24-hex account and user'} in its #fragment: ` +
        '#account=<24-hex id>&user=<24-hex id>&token=<Herald API token>&key=<Pusher key>' +
        '&wsHost=<host>&wsPort=<port> (see inbox.js).',
    );
    ui.connection.textContent = 'not configured';
    return;
  }
  // For tests and the console: the download path the link's click takes,
  // and the events heard.
  window.heraldInbox = { download, heard, config: { ...config, token: undefined } };
  refresh();
  connect();
})();
