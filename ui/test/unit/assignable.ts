/* Type check only (tsc): a plain supabase-js client and a postgrest-js client are IcpmlClients. */
import { createClient } from '@supabase/supabase-js';
import { PostgrestClient } from '@supabase/postgrest-js';
import type { IcpmlClient } from '../../src/client.js';

export const fromSupabase: IcpmlClient = createClient('http://127.0.0.1:54321', 'anon-key');
export const fromPostgrest: IcpmlClient = new PostgrestClient('http://127.0.0.1:3000', { headers: {} });
