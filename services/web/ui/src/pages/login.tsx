// Signing in (ThingsBoard's /api/auth/login) and setting the first password from an activation
// link (/login/createPassword?activateToken=…, ThingsBoard's UI path).
import { useState } from 'preact/hooks';
import { login, post, session } from '../api';
import { navigate } from '../router';
import { ErrorBox, useAction } from '../ui';

export function Login({ onLogin }: { onLogin: () => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const action = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    if (!username.trim() || !password) return action.setError(new Error('Enter your email and password.'));
    void action.run(async () => {
      await login(username.trim(), password);
      onLogin();
    });
  };
  return (
    <main class="login">
      <form class="card form" onSubmit={submit} noValidate aria-label="Log in">
        <h1>Thinglake</h1>
        <label>
          Email
          <input name="username" type="email" autocomplete="username" value={username} onInput={(e) => setUsername((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
        </label>
        <ErrorBox error={action.error} />
        <button type="submit" class="primary" disabled={action.busy}>
          {action.busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}

export function CreatePassword({ token, onLogin }: { token: string; onLogin: () => void }) {
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const action = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    if (!token) return action.setError(new Error('This link has no activation token.'));
    // The length policy is the server's (configurable): its 400 names the minimum.
    if (password !== repeat) return action.setError(new Error('The passwords differ.'));
    void action.run(async () => {
      const pair = await post<{ token: string; refreshToken: string }>('/api/noauth/activate?sendActivationMail=false', { activateToken: token, password });
      session.set(pair.token, pair.refreshToken);
      navigate('/', true);
      onLogin();
    });
  };
  return (
    <main class="login">
      <form class="card form" onSubmit={submit} noValidate aria-label="Create password">
        <h1>Set your password</h1>
        <label>
          Password
          <input name="password" type="password" autocomplete="new-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Repeat password
          <input name="repeat" type="password" autocomplete="new-password" value={repeat} onInput={(e) => setRepeat((e.target as HTMLInputElement).value)} />
        </label>
        <ErrorBox error={action.error} />
        <button type="submit" class="primary" disabled={action.busy}>
          Activate account
        </button>
      </form>
    </main>
  );
}
