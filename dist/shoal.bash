# Bash completion for shoal.
#
# Use it with any of:
#   source /path/to/shoal-VERSION-linux-ARCH/share/shoal.bash     # in ~/.bashrc
#   cp share/shoal.bash ~/.local/share/bash-completion/completions/shoal
#   cp share/shoal.bash /etc/bash_completion.d/shoal
# The Lmod modulefile (share/modulefile.lua) sources it when the module is loaded from bash.
#
# Plain bash (4.0 or newer): `complete -F` with compgen, compopt and mapfile; it does not need the
# bash-completion package. The verbs, options and fixed option values are those that `shoal --help` and
# `shoal VERB --help` print; keep them in step with src/Shoal.Cli when an option is added.
#
#   shoal <TAB>                      the verbs (worker is internal and left out)
#   shoal VERB -<TAB>                that verb's options, less those already given
#   shoal run|submit <TAB>           files (TASKFILE); --each-line FILE too
#   shoal status|nodes|report <TAB>  directories (RUN_DIR), the *.shoal ones when there are any; -r/--run-dir too
#   -o/--output, --state             their fixed values (text|json, text|json|csv, done|failed|running|interrupted)
#   shoal run ... -- <TAB>           a command, then files; shoal submit ... -- <TAB>: sbatch options, files
# Both `--opt value` and `--opt=value` are completed.

[ -n "${BASH_VERSION-}" ] || return 0

_shoal_verbs='run submit cat status nodes list report'

# Each verb's options as they appear in its --help; aliases of one option joined by '|'.
_shoal_run_options='-j|--slots --gpus --shell -r|--run-dir --retries --timeout --grace --retry-failed --each-line --range -q|--quiet --local --end-margin --continue --max-jobs --keep-nodes --node-setup --node-teardown --setup-timeout --teardown-timeout -o|--output -h|--help'
_shoal_options_for()
{
    case $1 in
        run) printf '%s\n' "$_shoal_run_options" ;;
        # submit takes run's options before '--' and sbatch's after it: --continue is implied (and refused), and
        # --each-line/--range cannot have their command after that '--', so they are left out.
        submit)
            local o=$_shoal_run_options
            o=${o/ --continue/}
            o=${o/ --each-line/}
            printf '%s\n' "${o/ --range/}"
            ;;
        cat) printf '%s\n' '-e|--stderr --attempt -r|--run-dir -h|--help' ;;
        status) printf '%s\n' '-w|--watch -o|--output -h|--help' ;;
        nodes) printf '%s\n' '-h|--help' ;;
        list) printf '%s\n' '--state --node -o|--output -r|--run-dir -h|--help' ;;
        report) printf '%s\n' '-o|--output -h|--help' ;;
    esac
}

# Options that take a value (in every verb that has them).
_shoal_takes_value()
{
    case $1 in
        -j | --slots | --gpus | --shell | -r | --run-dir | --retries | --timeout | --grace | --each-line | --range | \
            --end-margin | --max-jobs | --node-setup | --node-teardown | --setup-timeout | --teardown-timeout | \
            -o | --output | --attempt | --state | --node) return 0 ;;
    esac
    return 1
}

# Common sbatch options, offered after `shoal submit ... --`.
_shoal_sbatch_options='--nodes= --ntasks= --ntasks-per-node= --cpus-per-task= --time= --partition= --account= --qos= --gres= --gpus= --gpus-per-node= --mem= --mem-per-cpu= --exclusive --constraint= --job-name= --mail-type= --mail-user= --dependency= --reservation= --output= --error='

# _shoal_add PREFIX COMPGEN-ARGS...: append compgen's matches for $cur, each with PREFIX in front.
_shoal_add()
{
    local prefix=$1 m
    shift
    local -a matches
    mapfile -t matches < <(compgen "$@" -- "$cur" 2>/dev/null)
    for m in "${matches[@]}"; do
        [ -n "$m" ] && COMPREPLY+=("$prefix$m")
    done
}

_shoal_files()
{
    compopt -o filenames 2>/dev/null
    _shoal_add "$1" -f
}

# Run directories: the *.shoal directories that match, else any directory (to go down a path).
_shoal_rundirs()
{
    compopt -o filenames 2>/dev/null
    _shoal_add "$1" -d -X '!*.shoal'
    [ ${#COMPREPLY[@]} -gt 0 ] || _shoal_add "$1" -d
}

_shoal_commands()
{
    if [[ $cur == */* ]]; then
        _shoal_files "$1"
    else
        _shoal_add "$1" -c
    fi
}

_shoal_option_value()
{
    local verb=$1 opt=$2 prefix=$3
    case $opt in
        -r | --run-dir) _shoal_rundirs "$prefix" ;;
        -o | --output)
            case $verb in
                run | submit | status) _shoal_add "$prefix" -W 'text json' ;;
                list) _shoal_add "$prefix" -W 'text json csv' ;;
                report)
                    # the HTML file to write: directories and *.html
                    compopt -o filenames 2>/dev/null
                    _shoal_add "$prefix" -d
                    _shoal_add "$prefix" -f -X '!*.html'
                    ;;
            esac
            ;;
        --state) _shoal_add "$prefix" -W 'done failed running interrupted' ;;
        --node) _shoal_add "$prefix" -A hostname ;;
        --each-line) _shoal_files "$prefix" ;;
        --shell)
            local shells=""
            [ -r /etc/shells ] && shells=$(grep '^/' /etc/shells 2>/dev/null)
            _shoal_add "$prefix" -W "$shells"
            [ ${#COMPREPLY[@]} -gt 0 ] || _shoal_files "$prefix"
            ;;
        --node-setup | --node-teardown) _shoal_commands "$prefix" ;;
        *) ;; # a number, a duration, GPU ids, a range: nothing to offer
    esac
}

_shoal()
{
    COMPREPLY=()
    local -a words=("${COMP_WORDS[@]}")
    local cword=$COMP_CWORD
    local cur=${words[cword]-}
    local i w verb="" vi=0 dd=0

    # The verb: the first word that is not an option (the root's options take no value).
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        if [[ $w != -* ]]; then
            verb=$w
            vi=$i
            break
        fi
    done
    if [ -z "$verb" ]; then
        if [[ $cur == -* ]]; then
            _shoal_add '' -W '--help -h --version'
        else
            _shoal_add '' -W "$_shoal_verbs"
        fi
        return 0
    fi
    case " $_shoal_verbs " in
        *" $verb "*) ;;
        *) return 0 ;;
    esac

    # After `--`: run's command template (a command, then its arguments), or submit's sbatch options.
    for ((i = vi + 1; i < cword; i++)); do
        if [ "${words[i]}" = "--" ]; then
            dd=$i
            break
        fi
    done
    if [ "$dd" -gt 0 ]; then
        if [ "$verb" = submit ]; then
            if [[ $cur == -* ]]; then
                _shoal_add '' -W "$_shoal_sbatch_options"
                [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
            else
                _shoal_files ''
            fi
        elif [ "$cword" -eq $((dd + 1)) ]; then
            _shoal_commands ''
        else
            _shoal_files ''
        fi
        return 0
    fi

    # The value of an option: `--opt VALUE`, `--opt=VALUE` (bash splits it at '=' unless COMP_WORDBREAKS lacks it).
    local opt="" prefix=""
    if [ "$cur" = "=" ] && [ "$cword" -gt $((vi + 1)) ]; then
        opt=${words[cword - 1]}
        cur=""
    elif [ "$cword" -gt $((vi + 2)) ] && [ "${words[cword - 1]}" = "=" ]; then
        opt=${words[cword - 2]}
    elif [[ $cur == -*=* ]]; then
        opt=${cur%%=*}
        prefix="$opt="
        cur=${cur#*=}
    elif [ "$cword" -gt $((vi + 1)) ] && _shoal_takes_value "${words[cword - 1]}"; then
        opt=${words[cword - 1]}
    fi
    if [ -n "$opt" ]; then
        _shoal_takes_value "$opt" && _shoal_option_value "$verb" "$opt" "$prefix"
        return 0
    fi

    # The options already given, and how many positional arguments there are before this word.
    local used=" " npos=0
    for ((i = vi + 1; i < cword; i++)); do
        w=${words[i]}
        if [[ $w == -?* ]]; then
            used+="${w%%=*} "
            if [[ $w != *=* ]] && _shoal_takes_value "$w"; then
                if [ "${words[i + 1]-}" = "=" ]; then
                    ((i += 2))
                else
                    ((i += 1))
                fi
            elif [[ $w != *=* ]] && [ "${words[i + 1]-}" = "=" ]; then
                ((i += 2))
            fi
        else
            ((npos++))
        fi
    done

    if [[ $cur != -* ]]; then
        case $verb in
            run | submit)
                if [ "$npos" -eq 0 ]; then
                    _shoal_files ''
                    return 0
                fi
                ;;
            status | nodes | report)
                if [ "$npos" -eq 0 ]; then
                    _shoal_rundirs ''
                    return 0
                fi
                ;;
            cat)
                [ "$npos" -eq 0 ] && return 0 # a task id
                ;;
        esac
    fi

    # The verb's options that are not given yet (an option counts as given under any of its names).
    local group alias candidates="" given
    for group in $(_shoal_options_for "$verb"); do
        given=""
        for alias in ${group//|/ }; do
            [[ $used == *" $alias "* ]] && given=1
        done
        [ -z "$given" ] && candidates+=" ${group//|/ }"
    done
    _shoal_add '' -W "$candidates"
    return 0
}

complete -F _shoal shoal
