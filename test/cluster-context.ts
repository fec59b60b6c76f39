/** What test/global-setup.ts provides to every test file: the shared test cluster. */
import { inject } from 'vitest';

export interface Endpoint {
  host: string;
  port: number;
}

export interface TestRole {
  password: string;
  /** The SCRAM verifier PostgreSQL stores in pg_authid.rolpassword. */
  verifier: string;
}

export interface ClusterInfo {
  primary: Endpoint;
  replicas: Endpoint[];
  superuser: string;
  superuserPassword: string;
  /** `app` owns database `appdb`; `other` is a second plain login role. */
  roles: { app: TestRole; other: TestRole };
  baseDir: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    cluster: ClusterInfo;
  }
}

export function getCluster(): ClusterInfo {
  return inject('cluster');
}
