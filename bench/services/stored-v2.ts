// bench:storage's second version of stored.ts: the same code, another semver.
import v1 from "./stored.ts";

export default { ...v1, version: "2.0.0" };
