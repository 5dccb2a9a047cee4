// Starts Swagger UI on /docs/ (web/docs.py). A file, not an inline script: the page's CSP allows
// scripts from this origin only. Settings come from the page's data- attributes.
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  var settings = root.dataset;
  var ui = SwaggerUIBundle({
    url: settings.specUrl,
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // No call to the public validator service: nothing about this API leaves this server.
    validatorUrl: null,
    oauth2RedirectUrl: settings.redirectUrl,
    // Tokens live in this page's memory only, never in localStorage.
    persistAuthorization: false,
    displayRequestDuration: true,
    filter: true,
  });
  ui.initOAuth({
    clientId: settings.clientId,
    appName: "cdp API reference",
    scopes: settings.scopes.split(" "),
    usePkceWithAuthorizationCodeGrant: true,
  });
  window.ui = ui;
})();
