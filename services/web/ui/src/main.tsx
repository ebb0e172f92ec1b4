// Thinglake's web UI: the signed-in frame (navigation by role) and the page for each path.
import { render } from 'preact';
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { get, logout, post, session } from './api';
import type { User } from './api';
import { KINDS } from './kinds';
import { DashboardPage, Dashboards } from './pages/dashboards';
import { EntityDetail, EntityList } from './pages/entities';
import { History } from './pages/history';
import { SqlConsole } from './pages/sql';
import { Home } from './pages/home';
import { CreatePassword, Login } from './pages/login';
import { TenantDetail, Tenants } from './pages/tenants';
import { Link, match, navigate, useLocation } from './router';
import { ErrorBox, Spinner, UserContext } from './ui';
import './style.css';

function App() {
  const { path, params } = useLocation();
  const [user, setUser] = useState<User | null | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>();
  const [generation, setGeneration] = useState(0);

  useEffect(() => session.onEnd(() => setUser(null)), []);
  useEffect(() => {
    if (!session.token()) {
      setUser(null);
      return;
    }
    setError(undefined);
    get<User>('/api/auth/user').then(setUser, (e: Error) => {
      if (!session.token()) setUser(null);
      else setError(e);
    });
  }, [generation]);

  if (match('/login/createPassword', path))
    return <CreatePassword token={params.get('activateToken') ?? ''} onLogin={() => setGeneration((g) => g + 1)} />;
  if (error) return <ErrorBox error={error} />;
  if (user === undefined) return <Spinner />;
  if (user === null) return <Login onLogin={() => setGeneration((g) => g + 1)} />;
  return (
    <UserContext.Provider value={user}>
      <Frame user={user}>
        <Page path={path} user={user} />
      </Frame>
    </UserContext.Provider>
  );
}

function Page({ path, user }: { path: string; user: User }) {
  let m: Record<string, string> | null;
  if (user.authority === 'SYS_ADMIN') {
    if ((m = match('/tenants/:id', path))) return <TenantDetail id={m.id} />;
    if (match('/', path) || match('/tenants', path)) return <Tenants />;
    return <NotFound />;
  }
  if (match('/', path)) return <Home />;
  for (const kind of Object.values(KINDS)) {
    if (match(kind.route, path)) return <EntityList key={kind.key} kind={kind} />;
    if ((m = match(`${kind.route}/:id`, path))) return <EntityDetail key={`${kind.key}-${m.id}`} kind={kind} id={m.id} />;
  }
  if (match('/dashboards', path)) return <Dashboards />;
  if ((m = match('/dashboards/:id', path))) return <DashboardPage key={m.id} id={m.id} edit={new URLSearchParams(location.search).has('edit')} />;
  if ((m = match('/history/:type/:id', path))) return <History key={`${m.type}-${m.id}`} type={m.type} id={m.id} />;
  if (match('/sql', path)) return <SqlConsole />;
  return <NotFound />;
}

function NotFound() {
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        <Link href="/">Go home</Link>
      </p>
    </section>
  );
}

/** Whether the SQL console is for this user: tenant administrators, and customer users once the
 *  API answers their queries (asked once, with `SELECT 1`). */
function useSqlAllowed(user: User): boolean {
  const [allowed, setAllowed] = useState(user.authority === 'TENANT_ADMIN');
  useEffect(() => {
    if (user.authority !== 'CUSTOMER_USER') return;
    post('/api/sql', { query: 'SELECT 1' }).then(
      () => setAllowed(true),
      () => setAllowed(false),
    );
  }, [user.id.id]);
  return allowed;
}

function Frame({ user, children }: { user: User; children: ComponentChildren }) {
  const { path } = useLocation();
  const [menu, setMenu] = useState(false);
  const sql = useSqlAllowed(user);
  const links: [string, string][] =
    user.authority === 'SYS_ADMIN'
      ? [['/tenants', 'Tenants']]
      : user.authority === 'TENANT_ADMIN'
        ? [['/', 'Home'], ['/devices', 'Devices'], ['/assets', 'Assets'], ['/customers', 'Customers'], ['/dashboards', 'Dashboards']]
        : [['/', 'Home'], ['/devices', 'Devices'], ['/assets', 'Assets'], ['/dashboards', 'Dashboards']];
  if (sql) links.push(['/sql', 'SQL']);
  const current = (href: string) => (href === '/' ? path === '/' : path.startsWith(href));
  return (
    <div class="frame">
      <header>
        <Link class="brand" href="/">
          Thinglake
        </Link>
        <button type="button" class="menu-toggle" aria-expanded={menu} onClick={() => setMenu(!menu)}>
          Menu
        </button>
        <nav class={menu ? 'open' : ''} onClick={() => setMenu(false)}>
          {links.map(([href, label]) => (
            <Link key={href} href={href} class={current(href) ? 'current' : ''} aria-current={current(href) ? 'page' : undefined}>
              {label}
            </Link>
          ))}
        </nav>
        <span class="me" title={user.authority}>
          {user.email}
        </span>
        <button
          type="button"
          onClick={() => {
            void logout().then(() => navigate('/', true));
          }}
        >
          Log out
        </button>
      </header>
      <main>{children}</main>
    </div>
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
