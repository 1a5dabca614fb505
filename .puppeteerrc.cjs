// Never download a browser on install: Rapport uses Debian's chromium (CHROMIUM_PATH).
module.exports = { skipDownload: true };
