/** A Rapport api process for the benchmarks, on PORT at 127.0.0.1 (see role.ts). */
import { runRole } from './role';

runRole('api');
