// Completion for the SQL editor: Ctrl+Space lists the table and column names (from the
// catalog's schemas) that start with the word before the caret; ↑/↓ choose, Enter or Tab
// insert, Escape (or typing anything that is not part of a name) closes. The list is an ARIA
// listbox tied to the editor with aria-activedescendant.
//
// It must NOT: fetch anything (words come from `words()`), or change the editor except by
// replacing the word being completed.

let nextId = 0;

/** Attaches completion to `editor`; `words()` returns [{ word, kind }] to offer. */
export function attachCompletion(editor, words) {
  const id = `completion-${++nextId}`;
  const list = document.createElement('ul');
  list.id = id;
  list.className = 'completion';
  list.setAttribute('role', 'listbox');
  list.setAttribute('aria-label', 'Completions');
  list.hidden = true;
  editor.insertAdjacentElement('afterend', list);
  editor.setAttribute('aria-controls', id);
  editor.setAttribute('aria-autocomplete', 'list');
  let items = [];
  let active = 0;

  function wordBefore() {
    const upTo = editor.value.slice(0, editor.selectionStart);
    const m = /[A-Za-z_][A-Za-z0-9_]*$/.exec(upTo);
    return m ? { text: m[0], start: m.index } : { text: '', start: editor.selectionStart };
  }

  function close() {
    list.hidden = true;
    list.replaceChildren();
    items = [];
    editor.removeAttribute('aria-activedescendant');
    editor.setAttribute('aria-expanded', 'false');
  }

  function highlight(i) {
    active = (i + items.length) % items.length;
    [...list.children].forEach((li, n) => li.setAttribute('aria-selected', String(n === active)));
    editor.setAttribute('aria-activedescendant', `${id}-${active}`);
    list.children[active]?.scrollIntoView({ block: 'nearest' });
  }

  function open() {
    const prefix = wordBefore().text.toLowerCase();
    const seen = new Set();
    items = words()
      .filter(({ word }) => word.toLowerCase().startsWith(prefix) && word.toLowerCase() !== prefix)
      .filter(({ word }) => !seen.has(word) && seen.add(word))
      .sort((a, b) => a.word.localeCompare(b.word))
      .slice(0, 50);
    if (items.length === 0) {
      close();
      return;
    }
    list.replaceChildren(...items.map(({ word, kind }, n) => {
      const li = document.createElement('li');
      li.id = `${id}-${n}`;
      li.setAttribute('role', 'option');
      li.dataset.word = word;
      li.append(word);
      const k = document.createElement('span');
      k.className = 'kind';
      k.textContent = kind;
      li.append(k);
      li.addEventListener('mousedown', (e) => {
        e.preventDefault(); // keep the editor focused
        accept(n);
      });
      return li;
    }));
    list.hidden = false;
    editor.setAttribute('aria-expanded', 'true');
    highlight(0);
  }

  function accept(n = active) {
    const word = items[n]?.word;
    if (!word) return;
    const { start } = wordBefore();
    const end = editor.selectionStart;
    editor.setRangeText(word, start, end, 'end');
    close();
    editor.dispatchEvent(new Event('input', { bubbles: true }));
  }

  editor.addEventListener('keydown', (e) => {
    if (e.key === ' ' && e.ctrlKey) {
      e.preventDefault();
      open();
      return;
    }
    if (list.hidden) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      highlight(active + (e.key === 'ArrowDown' ? 1 : -1));
    } else if ((e.key === 'Enter' && !e.ctrlKey && !e.metaKey) || e.key === 'Tab') {
      e.preventDefault();
      accept();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      close();
    }
  });
  editor.addEventListener('input', () => {
    if (list.hidden) return;
    if (/[A-Za-z0-9_]$/.test(editor.value.slice(0, editor.selectionStart))) open();
    else close();
  });
  editor.addEventListener('blur', close);
  return { open, close };
}
