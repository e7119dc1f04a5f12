/**
 * What the admin API shows of a bundle and of a package function (docs/http-api.md): types only,
 * with no import, so the console's API types (http/admin/api.ts) can name them too.
 */

/** What a bundle is made of, as `GET /_/functions/<name>` shows it. */
export interface BundleInfo {
  /** The script's size, bytes. */
  bytes: number;
  sourceMapBytes: number;
  /** How many files it was made of. */
  modules: number;
  /** The npm packages bundled, with their installed versions: `{ "zod": "4.6.7" }`. */
  packages: Record<string, string>;
  /** The built-ins bundled as stand-ins: `["buffer", "events"]`. */
  standIns: string[];
}

/** A package function's package.json, as the admin API shows it. */
export interface PackageInfo {
  /** Its `name` and `version`, when it has them. */
  name?: string;
  version?: string;
  /** The entry file, relative to the folder: `index.ts`. */
  entry: string;
  /** Its `dependencies`, as declared. */
  dependencies: Record<string, string>;
}
