import { createContext, useCallback, useContext, useEffect, useRef, useState, type ReactNode } from 'react';
import { defaultTables, IcpmlError, type AppTables, type IcpmlClient } from './client.js';

interface IcpmlContextValue {
  client: IcpmlClient | null;
  tables: AppTables;
}

const IcpmlContext = createContext<IcpmlContextValue>({ client: null, tables: defaultTables });

/** Gives every @icpml/ui component below it a client (a supabase-js client) and the app's table names. */
export function IcpmlProvider(props: { client: IcpmlClient; tables?: Partial<AppTables>; children?: ReactNode }) {
  const value = { client: props.client, tables: { ...defaultTables, ...props.tables } };
  return <IcpmlContext.Provider value={value}>{props.children}</IcpmlContext.Provider>;
}

/** The client passed as a prop, else the provider's. */
export function useIcpml(client?: IcpmlClient, tables?: Partial<AppTables>): { client: IcpmlClient; tables: AppTables } {
  const ctx = useContext(IcpmlContext);
  const c = client ?? ctx.client;
  if (!c) throw new Error('@icpml/ui: pass a client prop or wrap the component in <IcpmlProvider client={supabase}>');
  return { client: c, tables: { ...ctx.tables, ...tables } };
}

export type AsyncState<T> =
  | { status: 'loading'; data?: undefined; error?: undefined }
  | { status: 'ready'; data: T; error?: undefined }
  | { status: 'error'; data?: undefined; error: IcpmlError };

/** Runs `load` when `key` changes; `reload()` runs it again. Stale answers are ignored. */
export function useAsync<T>(load: () => Promise<T>, key: string): AsyncState<T> & { reload: () => void } {
  const [state, setState] = useState<AsyncState<T>>({ status: 'loading' });
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    let live = true;
    setState({ status: 'loading' });
    loadRef.current().then(
      (data) => live && setState({ status: 'ready', data }),
      (e: unknown) =>
        live &&
        setState({
          status: 'error',
          error: e instanceof IcpmlError ? e : new IcpmlError({ message: e instanceof Error ? e.message : String(e) }),
        }),
    );
    return () => {
      live = false;
    };
  }, [key, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload } as AsyncState<T> & { reload: () => void };
}

/** A short message for an error, for people rather than logs. */
export function errorText(e: IcpmlError): string {
  if (e.forbidden) return 'You do not have access to this.';
  if (e.code === 'FETCH') return 'Could not reach the server.';
  return e.message;
}
