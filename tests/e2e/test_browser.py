"""End to end in headless Chromium against the demo site served by gunicorn: a customer sees
"You might like", buys a book and sees it leave the list; staff press "Retrain now" and see
the run finish.  Screenshots are saved in test-artifacts/e2e/."""

from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def wait(browser, timeout: float = 30):
    return WebDriverWait(browser, timeout)


def sign_in(browser, url: str, username: str, password: str) -> None:
    browser.get(url)
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
    wait(browser).until(EC.url_changes(url))


def box_products(browser) -> list[str]:
    links = browser.find_elements(By.CSS_SELECTOR, '[data-box="you-might-like"] .card-title')
    return [a.get_attribute("href").rstrip("/").rsplit("/", 1)[1] for a in links]


def eventually(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_customer_buys_and_staff_retrain(site, browser, shots):
    sign_in(browser, f"{site.url}/accounts/login/", "demo", "demo-reader")
    heading = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-box="you-might-like"] h2')))
    assert heading.text.startswith("You might like")
    picks = box_products(browser)
    assert len(picks) == 6
    browser.save_screenshot(str(shots / "01-home-you-might-like.png"))

    chosen = picks[0]
    browser.get(f"{site.url}/books/{chosen}/")
    assert browser.find_elements(By.CSS_SELECTOR, '[data-box="similar-items"] .card')
    browser.save_screenshot(str(shots / "02-book-page.png"))
    browser.find_element(By.XPATH, "//button[normalize-space()='Buy this book']").click()
    thanks = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".messages")))
    assert "Thank you" in thanks.text
    browser.save_screenshot(str(shots / "03-my-orders.png"))

    def gone():
        browser.get(f"{site.url}/")
        products = box_products(browser)
        return len(products) == 6 and chosen not in products

    assert eventually(gone), "the bought book is still recommended"
    browser.save_screenshot(str(shots / "04-home-after-buying.png"))

    browser.find_element(By.XPATH, "//button[contains(., 'Sign out')]").click()
    wait(browser).until(EC.presence_of_element_located((By.LINK_TEXT, "Sign in")))
    runs_url = f"{site.url}/admin/recommendations/trainingrun/"
    sign_in(browser, f"{site.url}/admin/login/?next=/admin/recommendations/trainingrun/", "staff", "staff-admin")
    wait(browser).until(EC.presence_of_element_located((By.XPATH, "//button[normalize-space()='Retrain now']"))).click()
    message = wait(browser, 300).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".messagelist"))).text
    assert "Retrain queued (run #2)" in message or "Run #2 finished and is live" in message, message

    def finished():
        browser.get(runs_url)
        row = browser.find_elements(By.XPATH, "//tr[.//a[normalize-space()='2']]")
        return row and "succeeded" in row[0].text

    assert eventually(finished, 300), browser.page_source[-2000:]
    assert browser.find_elements(By.CSS_SELECTOR, "svg rect, svg polyline"), "the chart of the runs"
    browser.save_screenshot(str(shots / "05-admin-runs.png"))
