/** A Rapport worker process for the benchmarks (see role.ts). */
import { runRole } from './role';

runRole('worker');
