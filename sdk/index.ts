export { defineConfig } from "./config.ts";
export type { MoltConfig, ServiceConfig, ServiceLimits, ServicePermissions } from "./config.ts";
export { defineService } from "./service.ts";
export type { HttpRequest, HttpResponse, ServiceContext, ServiceDefinition, Handler } from "./service.ts";
