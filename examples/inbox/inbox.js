// Herald's inbox example: the browser half of Herald's loop.
//
// Configuration comes from the URL's #fragment (never sent to a server, so
// the token stays out of access logs):
//
//   account  the account's 24-hex id (its channel is
//            presence-message-wm-global<account>)
//   user     the signed-in user's id: the presence member
//   token    a Herald API token bound to the account
//            (`herald token create --name inbox --account <account>`);
//            leave it out when `api` is your own app's forwarding route
//   key      the Pusher app key (public)
//   wsHost, wsPort   a self-hosted Pusher-protocol server (Sockudo, soketi,
//            Reverb); or `cluster` for Pusher Channels itself
//   tls=1    connect with wss:// (default ws://)
//   api      where Herald's /v1 is, default "/v1" (same origin)
//
// e.g. /examples/inbox/#account=5f0c…&user=5f0c…&token=…&key=app-key&wsHost=127.0.0.1&wsPort=6001
//
// In a real product the page belongs to the web app (say PHP), which holds
// the session: it forwards `api` calls to Herald adding its token, and takes
// `userId` of /push/auth from its session, never from the browser (README,
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
  };
  const channelName = 'presence-message-wm-global' + config.account;

  const $ = (id) => document.getElementById(id);
  const ui = {
    notice: $('notice'),
    connection: $('connection'),
    bell: $('bell'),
    unread: $('unread-count'),
    inbox: $('inbox'),
    list: $('messages'),
    empty: $('empty'),
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
   * message on a non-2xx answer.
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
      throw new Error(`${method} ${path}: HTTP ${response.status} ${answer.error || ''}`);
    }
    return response;
  }

  const accountPath = () => `/accounts/${config.account}/messages`;

  // ---- The bell and the list ----------------------------------------------

  async function refreshUnread() {
    const { unread } = await (await api(`${accountPath()}/unread-count`)).json();
    ui.unread.textContent = unread > 99 ? '99+' : String(unread);
    ui.unread.dataset.count = String(unread);
  }

  async function refreshList(freshId) {
    const page = await (await api(`${accountPath()}?limit=20`)).json();
    ui.list.replaceChildren(...page.messages.map((m) => messageItem(m, m.id === freshId)));
    ui.empty.hidden = page.messages.length > 0;
  }

  /** Both the count and the list; problems go to the notice. */
  function refresh(freshId) {
    return Promise.all([refreshUnread(), refreshList(freshId)]).catch((e) => notify(e.message));
  }

  /** One message as a list item. */
  function messageItem(message, fresh) {
    const item = document.createElement('li');
    item.className = fresh ? 'message fresh' : 'message';
    item.dataset.id = message.id;
    item.dataset.read = String(message.isRead);
    item.dataset.status = message.status;

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
    meta.textContent = `${message.status} · ${new Date(message.createdAt).toLocaleString()}`;
    item.append(title, content, meta);

    if (!message.isRead) {
      const read = document.createElement('button');
      read.type = 'button';
      read.className = 'mark-read';
      read.textContent = 'Mark read';
      read.addEventListener('click', () => markRead(message.id, read));
      item.append(read);
    }
    return item;
  }

  async function markRead(id, button) {
    button.disabled = true;
    try {
      await api(`${accountPath()}/${id}/read`, { method: 'POST' });
    } catch (e) {
      notify(e.message);
    }
    await refresh();
  }

  ui.markAll.addEventListener('click', async () => {
    try {
      await api(`${accountPath()}/read-all`, { method: 'POST' });
    } catch (e) {
      notify(e.message);
    }
    await refresh();
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

  // ---- Realtime: pusher-js on the account's presence channel --------------

  /**
   * pusher-js asks this for the channel's signature. Herald's
   * POST /v1/push/auth signs only the channel of the token's account.
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
    pusher.connection.bind('state_change', ({ current: state }) => {
      if (ui.connection.dataset.state !== 'subscribed' || state !== 'connected') {
        ui.connection.dataset.state = state;
        ui.connection.textContent = state;
      }
    });

    const channel = pusher.subscribe(channelName);
    channel.bind('pusher:subscription_succeeded', () => {
      ui.connection.dataset.state = 'subscribed';
      ui.connection.textContent = 'live';
      // Whatever happened before the subscription: read it once now.
      refresh();
      if (current) {
        api(`/exports/${encodeURIComponent(current)}`)
          .then((r) => r.json())
          .then((record) => {
            if (record.status === 'finished') exportEvent('finish')({ key: record.key || current });
          })
          .catch(() => {});
      }
    });
    channel.bind('pusher:subscription_error', (error) => {
      ui.connection.dataset.state = 'failed';
      ui.connection.textContent = 'not authorized';
      notify(`Joining ${channelName} failed: ${error.error || error.status || error}`);
    });
    channel.bind('new_message', (data) => refresh(data.messageId));
    channel.bind('export_progress', exportEvent('progress'));
    channel.bind('export_finish', exportEvent('finish'));
    channel.bind('export_failed', exportEvent('failed'));
  }

  // ---- Start --------------------------------------------------------------

  const missing = ['account', 'user', 'key'].filter((name) => !config[name]);
  if (missing.length > 0 || !/^[0-9a-f]{24}$/.test(config.account)) {
    notify(
      `This page needs ${missing.join(', ') || 'a 24-hex account'} in its #fragment: ` +
        '#account=<24-hex id>&user=<user id>&token=<Herald API token>&key=<Pusher key>' +
        '&wsHost=<host>&wsPort=<port> (see inbox.js).',
    );
    ui.connection.textContent = 'not configured';
    return;
  }
  // For tests and the console: the download path the link's click takes.
  window.heraldInbox = { download, config: { ...config, token: undefined } };
  refresh();
  connect();
})();
