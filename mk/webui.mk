# Open WebUI, the chat front end, next to the running product:
#
#   make serve        (one terminal)   vLLM + sidecar on http://127.0.0.1:8000
#   make webui        (another)        Open WebUI on http://127.0.0.1:8080, connected to it
#
# Open WebUI lives in its own venv (.venv-webui: about 7 GB, several minutes to install,
# once) so that its dependencies never touch the engine's. serving/webui.py gives it a key
# of its own and points its OpenAI and Ollama connections at the sidecar, offline.
#
#   make test-webui   the browser test: starts the real stack and Open WebUI, then headless
#                     Debian chromium creates the admin account and chats with gpt-oss-20b
#                     through both connections. Too heavy for `make test` on small hosts.
#   make webui-screenshots   the same, saving its screenshots into docs/
WEBUI_VENV := .venv-webui
WEBUI_PY := $(WEBUI_VENV)/bin/python
WEBUI_STAMP := $(WEBUI_VENV)/.installed-$(shell cat requirements/webui.txt requirements/webui-test.txt | cksum | cut -d' ' -f1)
WEBUI_PORT ?= 8080
WEBUI_SCREENSHOTS ?= .serving/webui-test
CHROMIUM ?= /usr/bin/chromium

.PHONY: webui webui-install test-webui webui-screenshots webui-browser

$(WEBUI_STAMP): requirements/webui.txt requirements/webui-test.txt
	@echo ">> install: Open WebUI into $(WEBUI_VENV) (about 7 GB; minutes, once)"
	@test -x $(WEBUI_PY) || $(PYTHON) -m venv $(WEBUI_VENV)
	@SECONDS=0; $(WEBUI_PY) -m pip install --quiet -r requirements/webui.txt -r requirements/webui-test.txt \
		&& echo "   done in $${SECONDS}s"
	@rm -f $(WEBUI_VENV)/.installed-*
	@touch $@

webui-install: $(WEBUI_STAMP) ## install Open WebUI into .venv-webui (automatic)

webui: $(VENV_STAMP) $(WEBUI_STAMP) ## Open WebUI on http://127.0.0.1:8080, connected to `make serve` (WEBUI_PORT=...)
	$(PY) -m serving.webui --port $(WEBUI_PORT)

# Debian's chromium; installed here when missing and we are root (as test-services does).
webui-browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo ">> installing chromium (Debian) for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; \
	  else echo "error: $(CHROMIUM) not found; install Debian's chromium"; exit 2; fi; }

test-webui: $(VENV_STAMP) $(WEBUI_STAMP) webui-browser ## browser test: Open WebUI + real stack in headless chromium (minutes)
	WEBUI_SCREENSHOTS=$(WEBUI_SCREENSHOTS) CHROMIUM=$(CHROMIUM) SERVING_PYTHON=$(PY) \
		$(WEBUI_PY) -m pytest -c tests/webui/pytest.ini tests/webui $(PYTEST_ARGS)

webui-screenshots: ## run the browser test and keep its screenshots in docs/
	$(MAKE) test-webui WEBUI_SCREENSHOTS=docs
