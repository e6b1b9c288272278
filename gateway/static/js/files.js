// Gathering files from a drop (files and whole folders) or from the file and folder pickers.

/** Read every entry of a directory (readEntries answers in chunks until it returns none). */
function readAllEntries(reader) {
  return new Promise((resolve, reject) => {
    const entries = [];
    const next = () =>
      reader.readEntries((chunk) => {
        if (!chunk.length) resolve(entries);
        else {
          entries.push(...chunk);
          next();
        }
      }, reject);
    next();
  });
}

function fileOf(entry) {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

async function walk(entry, prefix, out) {
  if (entry.isFile) {
    out.push({ file: await fileOf(entry), name: prefix + entry.name });
  } else if (entry.isDirectory) {
    for (const child of await readAllEntries(entry.createReader())) {
      await walk(child, `${prefix}${entry.name}/`, out);
    }
  }
}

/** [{file, name}] from a DataTransfer; folders are walked recursively, names keep their relative path. */
export async function filesFromDataTransfer(dataTransfer) {
  const items = Array.from(dataTransfer.items || []).filter((item) => item.kind === "file");
  // Entries must be taken synchronously, before the first await: the DataTransfer is emptied afterwards.
  const entries = items.map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (!entries.some(Boolean)) return filesFromList(dataTransfer.files);
  const out = [];
  for (const entry of entries) if (entry) await walk(entry, "", out);
  return out;
}

/** [{file, name}] from an <input type=file> (with `webkitdirectory` the names are relative paths). */
export function filesFromList(fileList) {
  return Array.from(fileList || []).map((file) => ({ file, name: file.webkitRelativePath || file.name }));
}
