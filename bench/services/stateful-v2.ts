import v1 from "./stateful.ts";
export default { ...v1, version: "2.0.0" };
