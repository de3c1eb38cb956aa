using System.Text;

namespace Shoal.Execution;

/// <summary>
/// The direct-exec fast path: a command line of plain words only is started as its own argv, without
/// <c>/bin/sh -c</c> — the shell would do exactly that (split on blanks, look the first word up in PATH, exec), so
/// the program gets the same argv, environment, exit code and output, one exec sooner. Plain: ASCII letters, digits
/// and <c>_ - . / , : = + @ %</c> only, separated by spaces or tabs; the first word is no assignment
/// (<c>NAME=value</c>) and no shell keyword or builtin (<c>echo</c>, <c>printf</c>, <c>test</c>, <c>cd</c>, …: their
/// builtin versions differ from the programs), except a lone <c>true</c> or <c>false</c>. Anything else — quotes, <c>$</c>, globs, <c>~</c>, redirections,
/// pipes, separators, comments, escapes, non-ASCII — goes through the shell as before.
/// </summary>
public static class DirectExec
{
    /// <summary>dash's and bash's keywords and builtins (POSIX special and regular), plus bash's common ones.</summary>
    private static readonly HashSet<string> ShellWords =
    [
        "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "function", "if", "in", "select", "then", "time", "until", "while",
        ".", ":", "[", "[[", "alias", "bg", "bind", "break", "builtin", "caller", "cd", "chdir", "command", "continue", "declare", "dirs", "disown",
        "echo", "enable", "eval", "exec", "exit", "export", "false", "fc", "fg", "getopts", "hash", "help", "history", "jobs", "kill", "let",
        "local", "logout", "mapfile", "popd", "printf", "pushd", "pwd", "read", "readarray", "readonly", "return", "set", "shift", "shopt",
        "source", "suspend", "test", "times", "trap", "true", "type", "typeset", "ulimit", "umask", "unalias", "unset", "wait",
    ];

    /// <summary>The argv of <paramref name="command"/> when it is plain words (see the class), else null.</summary>
    public static List<string>? PlainWords(ReadOnlySpan<byte> command)
    {
        var words = new List<string>();
        var start = -1;
        for (var i = 0; i <= command.Length; i++)
        {
            var c = i < command.Length ? command[i] : (byte)' ';
            if (c is (byte)' ' or (byte)'\t')
            {
                if (start >= 0)
                {
                    words.Add(Encoding.ASCII.GetString(command[start..i]));
                    start = -1;
                }

                continue;
            }

            if (!IsPlain(c))
            {
                return null;
            }

            if (start < 0)
            {
                start = i;
            }
        }

        if (words.Count == 0 || words[0].Contains('=', StringComparison.Ordinal)
            || (ShellWords.Contains(words[0]) && !(words.Count == 1 && words[0] is "true" or "false")))
        {
            return null; // (a lone true or false is the same as the program: exit 0 or 1, nothing printed)
        }

        return words;
    }

    private static bool IsPlain(byte c) =>
        c is (>= (byte)'a' and <= (byte)'z') or (>= (byte)'A' and <= (byte)'Z') or (>= (byte)'0' and <= (byte)'9')
            or (byte)'_' or (byte)'-' or (byte)'.' or (byte)'/' or (byte)',' or (byte)':' or (byte)'=' or (byte)'+' or (byte)'@' or (byte)'%';

    /// <summary>Where the shell would find <paramref name="program"/>: itself when it holds a '/', else the first
    /// executable regular file of that name in <paramref name="path"/> (PATH); null when there is none.</summary>
    public static string? Resolve(string program, string? path)
    {
        ArgumentNullException.ThrowIfNull(program);
        if (program.Contains('/', StringComparison.Ordinal))
        {
            return program;
        }

        foreach (var dir in (path ?? "/usr/local/bin:/usr/bin:/bin").Split(':'))
        {
            var candidate = Path.Combine(dir.Length == 0 ? "." : dir, program);
            if (ChildProcess.IsExecutableFile(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
